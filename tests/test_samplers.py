"""Class-rebalancing samplers: target distribution, and DDP sharding simulated without processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from scipy.stats import chisquare
from torch.utils.data import DataLoader, DistributedSampler

from litvision.datamodules.sampling.samplers import ClassAwareSampler, ClassBalancedSampler
from litvision.utils.class_weights import class_weights
from tests.helpers.fake_cifar import write_fake_cifar

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# A long-tailed label array (head 500 ... tail 10), shuffled so classes are interleaved.
COUNTS = np.array([500, 240, 120, 60, 25, 10])
TARGETS = np.random.default_rng(0).permutation(np.repeat(np.arange(len(COUNTS)), COUNTS))
N_DRAWS = 30_000
P_MIN = 1e-3  # fixed seeds: deterministic p-values; a correct sampler sits far above this


def expected_shares(kind: str, power: float = 1.0, beta: float | None = None) -> np.ndarray:
    """Target class distribution, written out from the definitions (not from the sampler)."""
    n = COUNTS.astype(float)
    if kind == "class_aware":
        share = np.ones_like(n)
    elif beta is not None:
        share = n * (1 - beta) / (1 - beta**n)
    else:
        share = n * n**-power
    return share / share.sum()


SAMPLERS = {
    "inverse": (lambda **kw: ClassBalancedSampler(TARGETS, power=1.0, **kw), expected_shares("cb", 1.0)),
    "sqrt": (lambda **kw: ClassBalancedSampler(TARGETS, power=0.5, **kw), expected_shares("cb", 0.5)),
    "effective_number": (
        lambda **kw: ClassBalancedSampler(TARGETS, beta=0.99, **kw),
        expected_shares("cb", beta=0.99),
    ),
    "class_aware": (lambda **kw: ClassAwareSampler(TARGETS, **kw), expected_shares("class_aware")),
}


def class_histogram(indices) -> np.ndarray:
    return np.bincount(TARGETS[np.asarray(list(indices))], minlength=len(COUNTS))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampled_histogram_matches_target(name: str) -> None:
    make, shares = SAMPLERS[name]
    histogram = class_histogram(make(seed=3, num_samples=N_DRAWS))
    assert histogram.sum() == N_DRAWS
    assert chisquare(histogram, shares * N_DRAWS).pvalue > P_MIN
    # The test has power: the natural (imbalanced) distribution is rejected outright.
    natural = COUNTS / COUNTS.sum()
    assert chisquare(histogram, natural * N_DRAWS).pvalue < 1e-12


def test_class_probabilities_report_the_target() -> None:
    for make, shares in SAMPLERS.values():
        np.testing.assert_allclose(make().class_probabilities(), shares, rtol=1e-9)


def test_class_aware_cycles_through_each_class_evenly() -> None:
    """Within a class, every image is drawn floor(k/n) or ceil(k/n) times, not at random."""
    sampler = ClassAwareSampler(TARGETS, seed=1, num_samples=N_DRAWS)
    drawn = np.bincount(np.asarray(list(sampler)), minlength=len(TARGETS))
    for c in range(len(COUNTS)):
        per_image = drawn[TARGETS == c]
        assert per_image.max() - per_image.min() <= 1, f"class {c}: {per_image.min()}..{per_image.max()}"


def test_plain_power_zero_and_beta_zero_do_not_rebalance() -> None:
    np.testing.assert_allclose(class_weights(COUNTS, power=0.0), np.ones(len(COUNTS)))
    np.testing.assert_allclose(class_weights(COUNTS, beta=0.0), np.ones(len(COUNTS)))
    weights = class_weights([4, 0, 1], power=1.0)
    assert weights[1] == 0 and weights.sum() == pytest.approx(3) and weights[2] == pytest.approx(4 * weights[0])


# ---- DDP, simulated: one sampler per rank, no processes ---------------------------------


def rank_streams(name: str, world: int, epoch: int, seed: int = 11, num_samples: int | None = None) -> list[list[int]]:
    make, _ = SAMPLERS[name]
    streams = []
    for rank in range(world):
        sampler = make(num_replicas=world, rank=rank, seed=seed, num_samples=num_samples)
        sampler.set_epoch(epoch)
        streams.append(list(sampler))
    return streams


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_ranks_share_one_global_stream(name: str, world: int) -> None:
    total = 20_000
    shares = rank_streams(name, world, epoch=0, num_samples=total)
    # len() per rank: the global count split evenly (rounded up).
    assert all(len(s) == total // world for s in shares)
    # Disjoint shares: interleaving the ranks' shares gives back, position for position,
    # the stream a single process draws with the same seed; no position is used twice.
    single = rank_streams(name, 1, epoch=0, num_samples=total)[0]
    interleaved = np.empty(total, dtype=np.int64)
    for rank, share in enumerate(shares):
        interleaved[rank::world] = share
    np.testing.assert_array_equal(interleaved, single)
    # ... and the ranks do not replay one another (the classic "same order on every rank").
    assert all(shares[0][:50] != shares[r][:50] for r in range(1, world))
    # The union follows the target distribution.
    _, target = SAMPLERS[name]
    union = class_histogram(np.concatenate(shares))
    assert chisquare(union, target * total).pvalue > P_MIN


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_stream_changes_per_epoch_and_reproduces_per_seed(name: str, world: int) -> None:
    epoch0 = rank_streams(name, world, epoch=0)
    epoch1 = rank_streams(name, world, epoch=1)
    for rank in range(world):
        assert epoch0[rank] != epoch1[rank]
    assert rank_streams(name, world, epoch=1) == epoch1  # same seed, fresh objects: same stream
    assert rank_streams(name, world, epoch=1, seed=12) != epoch1


@pytest.mark.parametrize("world, num_samples, per_rank", [(2, None, 478), (4, None, 239), (4, 1001, 251), (3, 10, 4)])
def test_len_per_rank(world: int, num_samples: int | None, per_rank: int) -> None:
    # len(TARGETS) = 955; the global count is rounded UP to a multiple of the world size.
    for make, _ in SAMPLERS.values():
        for rank in range(world):
            sampler = make(num_replicas=world, rank=rank, seed=0, num_samples=num_samples)
            assert len(sampler) == per_rank
            assert len(list(sampler)) == per_rank


def test_is_a_distributed_sampler_so_lightning_leaves_it_alone() -> None:
    """Lightning only replaces/wraps samplers that are not DistributedSampler instances."""
    sampler = ClassBalancedSampler(TARGETS, num_replicas=2, rank=1, seed=0)
    assert isinstance(sampler, DistributedSampler)
    loader = DataLoader(list(range(len(TARGETS))), batch_size=64, sampler=sampler)
    assert sum(len(batch) for batch in loader) == len(sampler)


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match="rank"):
        ClassBalancedSampler(TARGETS, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="seed"):
        ClassAwareSampler(TARGETS, num_replicas=2, rank=0, seed=None)
    with pytest.raises(ValueError, match="num_samples"):
        ClassAwareSampler(TARGETS, num_samples=0)
    with pytest.raises(ValueError, match="beta"):
        ClassBalancedSampler(TARGETS, beta=1.0)
    with pytest.raises(ValueError, match="integer"):
        ClassBalancedSampler(np.array([0.5, 1.0]))
    # one process, no seed: allowed (nothing to agree on)
    assert len(ClassAwareSampler(TARGETS, seed=None)) == len(TARGETS)


@pytest.mark.parametrize(
    "option, expected", [("none", None), ("class_balanced", ClassBalancedSampler), ("class_aware", ClassAwareSampler)]
)
def test_sampler_configs_reach_the_train_loader(tmp_path, option: str, expected: type | None) -> None:
    """The ``sampler=`` group, as composed by Hydra, drives the train loader only."""
    write_fake_cifar(tmp_path, n_train_per_class=20, n_test_per_class=2)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        overrides = [
            f"sampler={option}",
            f"dataset.data_dir={tmp_path}",
            "dataset.imbalance_factor=5",
            "dataset.num_workers=0",
            "dataset.download=false",
            "seed=3",
        ]
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    sampler = datamodule.train_dataloader().sampler
    assert len(sampler) == len(datamodule.splits.train)
    if expected is None:  # sampler=none (empty node): plain shuffling, no re-balancing
        assert not isinstance(sampler, (ClassBalancedSampler, ClassAwareSampler))
    else:
        assert type(sampler) is expected
        assert sampler.seed == 3 and sampler.num_replicas == 1
    assert not isinstance(datamodule.val_dataloader().sampler, (ClassBalancedSampler, ClassAwareSampler))
