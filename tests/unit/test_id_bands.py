"""DR id bands across episodes: DR's new ids never meet ids the primary holds or hands out.

A pure model of the sequences: the primary hands out ids after its backup, loses the region,
DR restores a backup (the newest one, or an older one: a fast restore takes the last full),
continues at ``dr_sequence_start``, takes writes; the failback moves the primary ``gap`` past
DR's sequence (``datasync._move_sequences``) and the primary takes writes again.
"""

from __future__ import annotations

import pytest

from resilience.dr.activation import dr_sequence_start

GAP = 1_000_000_000
WRITES = 50_000  # rows a side writes per phase (DR: times the episode): far less than a band


def episodes(count: int, restore_from_oldest: bool) -> list[tuple[range, list[range]]]:
    """(ids DR handed out, the ranges of ids the primary handed out around it) per episode."""
    primary_last, backups, out = 10_000, [10_000], []
    for episode in range(1, count + 1):
        backups.append(primary_last)
        restored = backups[0] if restore_from_oldest else backups[-1]
        after_backup = range(primary_last + 1, primary_last + WRITES + 1)  # the rows DR lacks
        primary_last += WRITES
        dr_first = dr_sequence_start(restored, episode, GAP) + 1
        dr_ids = range(dr_first, dr_first + WRITES * episode)  # each episode serves longer than the last
        primary_last = max(primary_last, dr_ids[-1] + GAP)  # failback: the primary one gap past DR
        during_ramp = range(primary_last + 1, primary_last + WRITES + 1)
        primary_last += WRITES
        out.append((dr_ids, [after_backup, during_ramp]))
    return out


@pytest.mark.parametrize("restore_from_oldest", [False, True], ids=["newest-backup", "oldest-backup"])
def test_dr_ids_never_meet_the_primarys_in_any_episode(restore_from_oldest):
    history = episodes(5, restore_from_oldest)
    primary_ids = [ids for _, ranges in history for ids in ranges]
    for episode, (dr_ids, _) in enumerate(history, 1):
        for other in primary_ids:
            assert dr_ids.stop <= other.start or other.stop <= dr_ids.start, (
                f"episode {episode}: DR ids {dr_ids} overlap the primary's {other}")


def test_the_rule_before_put_a_second_episode_from_an_old_backup_inside_the_primarys_band():
    """ids ``restored_last + episode x gap``: episode 2 from the backup episode 1 restored lands right
    where the primary continued after failback 1 (seen as an uploads 'conflict' in CI)."""
    restored, first_dr = 10_000, 10_000 + GAP
    primary_after_failback_1 = first_dr + WRITES + GAP  # episode 1 wrote WRITES rows in DR
    before = restored + 2 * GAP
    # episode 2 writing more rows than episode 1 did hands out ids the primary already holds
    assert before < primary_after_failback_1 < before + 2 * WRITES
    assert dr_sequence_start(restored, 2, GAP) >= primary_after_failback_1 + WRITES


@pytest.mark.parametrize("episode, gap", [(0, GAP), (1, 0), (-1, GAP)])
def test_bad_episode_or_gap_is_refused(episode, gap):
    with pytest.raises(ValueError, match="must be positive"):
        dr_sequence_start(1, episode, gap)
