"""GradualPruning under MirroredStrategy (two logical CPUs) gives the masks one device gives."""

from mirrored_util import mirrored_vs_one_device


def test_mirrored_strategy_gives_the_masks_of_one_device():
    result = mirrored_vs_one_device("GradualPruning(PolynomialDecay(0.0, 0.9, 0, 12, frequency=3))")
    assert result["replicas"] == 2 and result["mask_copies"] == [2, 2]
    assert result["same_initial_weights"]
    assert result["update_steps"] == [[0, 3, 6, 9, 12]] * 2  # 16 steps, one update every 3 up to step 12
    assert result["replicas_agree"] and result["same_masks_at_every_update"]
    assert result["kept"] == [4, 19]  # kept_count(0.1, 36), kept_count(0.1, 192)
    assert result["max_weight_difference"] < 1e-4  # the two runs trained the same network
