"""Building a game twice gives the same game file (alfworld words the task with an unseeded random)."""

import random

from act_pipeline.envs import alfworld as aw


def test_a_game_is_worded_the_same_whenever_it_is_built(alfworld_data, tmp_path):
    games = aw.select_balanced(aw.discover_games(alfworld_data, "train"), 6)  # one per task type
    logic = aw.game_logic()
    random.seed(1)
    first = [aw.build_game(g.path, tmp_path / "a" / g.game_id, logic).read_bytes() for g in games]
    random.seed(2)  # whatever the global random state, the same bytes
    second = [aw.build_game(g.path, tmp_path / "b" / g.game_id, logic).read_bytes() for g in games]
    assert first == second
    random.seed(3)
    expected = random.random()
    random.seed(3)
    aw.build_game(games[0].path, tmp_path / "c", logic)
    assert random.random() == expected  # the global random state is left as it was
