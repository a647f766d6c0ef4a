"""Counter-based generator (Philox4x32-10), Box-Muller normals and the exact summation."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from multiscale import _core

U32 = 0xFFFFFFFF

# ---------------------------------------------------------------------------------------------
# Philox4x32-10 known-answer tests (Random123 kat_vectors)


@pytest.mark.parametrize(
    "ctr, key, expected",
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((U32, U32, U32, U32), (U32, U32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
)
def test_philox_known_answers(ctr, key, expected):
    out = _core.philox4x32_10(*ctr, *key)
    assert tuple(int(v) for v in out) == expected


def test_philox_is_sensitive_to_every_word():
    base = _core.philox4x32_10(1, 2, 3, 4, 5, 6)
    args = [1, 2, 3, 4, 5, 6]
    for i in range(6):
        changed = list(args)
        changed[i] ^= 1
        assert _core.philox4x32_10(*changed) != base, i


# ---------------------------------------------------------------------------------------------
# Box-Muller normals, checked against an independent NumPy implementation on the Philox words


def _bm64(ur: int, ua: int) -> tuple[float, float]:
    u = 1.0 - (ur >> 12) * 2.0**-52  # (0, 1]
    r = math.sqrt(-2.0 * math.log(u))
    q = ua >> 62
    g = (((ua << 2) & ((1 << 64) - 1)) >> 12) * 2.0**-52 - 0.5
    x = g * (math.pi / 2)
    c, s = math.cos(x), math.sin(x)
    cq, sq = (-s, c) if q & 1 else (c, s)
    sign = -1.0 if q & 2 else 1.0
    return r * sign * cq, r * sign * sq


def _bm32(ur: int, ua: int) -> tuple[float, float]:
    u = 1.0 - (ur >> 9) * 2.0**-23
    r = math.sqrt(-2.0 * math.log(u))
    q = ua >> 30
    g = (((ua << 2) & U32) >> 9) * 2.0**-23 - 0.5
    x = g * (math.pi / 2)
    c, s = math.cos(x), math.sin(x)
    cq, sq = (-s, c) if q & 1 else (c, s)
    sign = -1.0 if q & 2 else 1.0
    return r * sign * cq, r * sign * sq


def _splitmix64(x: int) -> int:
    """SplitMix64 finaliser (the seed hash of rng/philox.h), in plain Python integers."""
    M = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & M
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
    return x ^ (x >> 31)


def test_splitmix64_known_values():
    # Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c: state += golden; mix):
    # the first output for state 0 is 0xE220A8397B1DCDAF.
    assert _splitmix64(0) == 0xE220A8397B1DCDAF


def _reference_normals(seed: int, path: int, step: int, n: int, single: bool) -> np.ndarray:
    h = _splitmix64(seed)
    k0, k1 = h & U32, h >> 32
    out = []
    block = 0
    while len(out) < n:
        w = _core.philox4x32_10(block, path, step & U32, step >> 32, k0, k1)  # stream 0
        if single:
            out += [*_bm32(w[0], w[1]), *_bm32(w[2], w[3])]
        else:
            out += [*_bm64((w[0] << 32) | w[1], (w[2] << 32) | w[3])]
        block += 1
    return np.asarray(out[:n])


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize(
    "seed, path, step",
    [(0, 0, 0), (12345, 7, 3), (2**40 + 5, 2**31 + 11, 2**33 + 17), (2**64 - 1, 2**32 - 1, 999)],
)
def test_normals_match_reference_box_muller(seed, path, step, single):
    n = 7
    got = _core.normals(seed, path, 1, step, n, single)[0]
    ref = _reference_normals(seed, path, step, n, single)
    if single:
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=2e-6, atol=2e-6)
    else:
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Statistical quality


@pytest.fixture(scope="module", params=[False, True], ids=["float64", "float32"])
def sample(request):
    single = request.param
    z = _core.normals(20240607, 0, 250_000, 11, 4, single)  # (paths, 4)
    return single, z


def test_normals_shape_dtype(sample):
    single, z = sample
    assert z.shape == (250_000, 4)
    assert z.dtype == (np.float32 if single else np.float64)
    assert np.all(np.isfinite(z))


def test_normals_moments(sample):
    _, z = sample
    x = z.astype(np.float64).ravel()
    N = x.size
    mean = x.mean()
    var = x.var()
    m4 = np.mean(x**4)
    assert abs(mean) < 4 / math.sqrt(N), mean
    assert abs(var - 1) < 4 * math.sqrt(2 / N), var
    assert abs(m4 - 3) < 4 * math.sqrt(96 / N), m4


def test_normals_kolmogorov_smirnov(sample):
    _, z = sample
    for j in range(z.shape[1]):
        p = stats.kstest(z[:, j].astype(np.float64), "norm").pvalue
        assert p > 1e-3, (j, p)


def _corr_bound(x: np.ndarray, y: np.ndarray) -> None:
    r = np.corrcoef(x.astype(np.float64), y.astype(np.float64))[0, 1]
    assert abs(r) < 4 / math.sqrt(x.size), r


def test_normals_components_uncorrelated(sample):
    _, z = sample
    _corr_bound(z[:, 0], z[:, 1])  # the two outputs of one Box-Muller pair
    _corr_bound(z[:, 1], z[:, 2])  # across Philox blocks (float64) / pairs (float32)


def test_normals_paths_uncorrelated(sample):
    _, z = sample
    _corr_bound(z[:-1, 0], z[1:, 0])
    _corr_bound(z[:-1, 3], z[1:, 3])


@pytest.mark.parametrize("single", [False, True])
def test_normals_consecutive_steps_uncorrelated(single):
    a = _core.normals(99, 0, 200_000, 41, 2, single)
    b = _core.normals(99, 0, 200_000, 42, 2, single)
    _corr_bound(a[:, 0], b[:, 0])
    _corr_bound(a[:, 1], b[:, 1])


def test_normals_tails_float64():
    z = _core.normals(5, 0, 1_000_000, 0, 2, False)
    zmax = np.abs(z).max()
    assert 4.0 < zmax < 8.5, zmax


def test_normals_float32_bounded_by_23_bit_uniforms():
    # documented: FLOAT32 normals come from 23-bit uniforms, so |z| <= sqrt(-2 ln 2^-23) ~ 5.65
    z = _core.normals(5, 0, 500_000, 0, 4, True)
    assert np.abs(z).max() <= math.sqrt(-2 * math.log(2.0**-23)) * (1 + 1e-6)
    assert np.abs(z).max() > 4.0


# ---------------------------------------------------------------------------------------------
# Addressing: a pure function of (seed, path, step)


@pytest.mark.parametrize("single", [False, True])
def test_normals_pure_function_of_path(single):
    s = 314159
    whole = _core.normals(s, 0, 20, 3, 4, single)
    part = _core.normals(s, 10, 5, 3, 4, single)
    assert np.array_equal(part, whole[10:15])
    again = _core.normals(s, 0, 20, 3, 4, single)
    assert np.array_equal(again, whole)
    one = _core.normals(s, 17, 1, 3, 4, single)
    assert np.array_equal(one[0], whole[17])


@pytest.mark.parametrize("single", [False, True])
def test_normals_prefix_independent_of_count(single):
    # the first n normals of (seed, path, step) do not depend on how many are drawn
    long = _core.normals(8, 3, 4, 5, 9, single)
    short = _core.normals(8, 3, 4, 5, 3, single)
    assert np.array_equal(short, long[:, :3])


@pytest.mark.parametrize("single", [False, True])
def test_normals_differ_between_seeds_and_steps(single):
    base = _core.normals(1, 0, 64, 0, 4, single)
    others = [
        _core.normals(2, 0, 64, 0, 4, single),  # seed
        _core.normals(1 + 2**32, 0, 64, 0, 4, single),  # high word of the seed (key k1)
        _core.normals(1, 0, 64, 1, 4, single),  # step
        _core.normals(1, 0, 64, 2**32, 4, single),  # high word of the step (ctr3)
        _core.normals(1, 1, 64, 0, 4, single),  # path
    ]
    for o in others:
        assert not np.any(o == base)


# ---------------------------------------------------------------------------------------------
# Exact, order-independent summation


def _hard_values(rng: np.random.Generator, n: int = 100_000) -> np.ndarray:
    q = n // 4
    big = rng.uniform(1.0, 9.0, q) * 1e16
    parts = [
        big,
        -big[rng.permutation(q)],  # cancels exactly overall, but not in any running sum
        rng.normal(size=q) * 1e-8,
        rng.normal(size=n - 3 * q),
    ]
    return np.concatenate(parts)


def _ulp_distance(a: float, b: float) -> int:
    ia = int(np.float64(a).view(np.int64))
    ib = int(np.float64(b).view(np.int64))
    ia = ia if ia >= 0 else -(ia & 0x7FFFFFFFFFFFFFFF)
    ib = ib if ib >= 0 else -(ib & 0x7FFFFFFFFFFFFFFF)
    return abs(ia - ib)


def test_exact_sum_order_independent():
    rng = np.random.default_rng(2718)
    v = _hard_values(rng)
    ref = _core.exact_sum(v)
    naive = {float(np.sum(v))}
    for _ in range(6):
        p = v[rng.permutation(v.size)]
        s = _core.exact_sum(p)
        assert np.float64(s).view(np.int64) == np.float64(ref).view(np.int64)
        naive.add(float(np.sum(p)))
    # the test has teeth: the ordinary float sum depends on the order of these terms
    assert len(naive) > 1
    exact = math.fsum(v)
    assert _ulp_distance(ref, exact) <= 1, (ref, exact)
    assert ref in (exact, np.nextafter(exact, np.inf), np.nextafter(exact, -np.inf))


def test_exact_sum_matches_fsum_on_random_sets():
    rng = np.random.default_rng(11)
    for _ in range(300):
        k = int(rng.integers(1, 40))
        v = rng.normal(size=k) * 10.0 ** rng.integers(-300, 300, size=k)
        v = np.concatenate([v, -v[: k // 2]])
        assert _ulp_distance(_core.exact_sum(v), math.fsum(v)) <= 1, v


@pytest.mark.parametrize(
    "values, expected",
    [
        ([], 0.0),
        ([-0.0], 0.0),
        ([1.0, 1e100, 1.0, -1e100], 2.0),
        ([1e308, 1e308, -1e308], 1e308),  # no intermediate overflow
        ([5e-324] * 10, 5e-323),  # subnormals
        ([-1.5, -2.25], -3.75),
        ([2.0**-1074, 2.0**1023, -(2.0**1023)], 2.0**-1074),
    ],
)
def test_exact_sum_edge_cases(values, expected):
    assert _core.exact_sum(np.asarray(values, dtype=np.float64)) == expected


@pytest.mark.parametrize("values,expected", [
    ([1.0, np.inf, 2.0], np.inf),
    ([-np.inf, 1e300, 5.0], -np.inf),
    ([np.inf, -np.inf], np.nan),
    ([np.nan, 1.0], np.nan),
    ([1e308, 1e308], np.inf),  # exact sum overflows double
    ([1e308, 1e308, -1e308], 1e308),  # but intermediate overflow does not exist in exact sums
])
def test_exact_sum_non_finite_follows_ieee(values, expected):
    for perm in itertools.permutations(values):
        got = _core.exact_sum(np.array(perm, dtype=float))
        if np.isnan(expected):
            assert np.isnan(got)
        else:
            assert got == expected
