"""SIM forward model, parameter estimation and Wiener reconstruction on simulated frames."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.core.errors import ConfigError, DataError, InputFileError
from fluorecon.methods.classical.sim import (
    RadialOTF,
    estimate_sim_parameters,
    read_mrc,
    separate_bands,
    sim_reconstruct,
)
from fluorecon.metrics import frc
from fluorecon.metrics.fidelity import normalized_ssim
from fluorecon.simulate.camera import CameraModel, camera_inverse
from fluorecon.simulate.phantoms import filaments
from fluorecon.simulate.sim import sim_pattern, simulate_sim

N = 256  # raw frame size; the truth is 2N


@pytest.fixture(scope="module")
def acquisition():
    truth = filaments((2 * N, 2 * N), seed=11, thickness=1.2)
    sim = simulate_sim(truth, rng=5, photons=300)
    otf = RadialOTF.from_optics(na=sim.na, wavelength=sim.wavelength, pixel_size=sim.pixel_size)
    return sim, camera_inverse(sim.frames, sim.camera), otf


def _phase_at_centre(pattern, n, pixel_size):
    c = np.full(2, n / 2 * pixel_size)
    return pattern.phases + 2 * np.pi * (pattern.wavevectors @ c)[:, None]


def _frc_limit(a, b, spacing, fmax):
    r = frc(a, b, spacing=spacing, max_frequency=fmax)
    below = np.nonzero((r.correlation < 1 / 7) & (r.frequencies > 0.5))[0]
    return float(r.frequencies[below[0]] if below.size else r.frequencies[-1])


def test_simulation_units_and_shapes(acquisition):
    sim, photons, _ = acquisition
    assert sim.frames.shape == (9, N, N) and sim.frames.dtype == np.float32
    assert sim.truth.shape == (2 * N, 2 * N)
    # Averaged over the phase steps the pattern is uniform: the mean of each angle's frames is
    # the widefield image plus background (up to noise).
    for a in range(3):
        mean = photons[3 * a:3 * a + 3].mean(axis=0)
        err = np.abs(mean - sim.widefield - sim.background).mean()
        assert err < 0.1 * sim.widefield.mean() + 3.0
    # Single frames are modulated: the difference of two phase steps has a spectral peak at
    # the pattern frequency, far above the noise floor.
    spec = np.abs(np.fft.fft2(photons[0] - photons[1]))
    ky, kx = np.rint(sim.pattern.wavevectors[0] * N * sim.pixel_size).astype(int)
    assert spec[ky % N, kx % N] > 20 * np.median(spec)


@pytest.mark.parametrize("method", ["autocorrelation", "cross-correlation"])
def test_estimation_recovers_frequency_angle_phase(acquisition, method):
    sim, photons, otf = acquisition
    est = estimate_sim_parameters(photons, pixel_size=sim.pixel_size, otf=otf,
                                  background=sim.background, phase_method=method)
    true, got = sim.pattern, est.pattern
    np.testing.assert_allclose(got.frequencies, true.frequencies, rtol=2e-3)
    assert np.max(np.abs(np.degrees(got.angles - true.angles))) < 0.1
    dphi = np.angle(np.exp(1j * (_phase_at_centre(got, N, sim.pixel_size)
                                 - _phase_at_centre(true, N, sim.pixel_size))))
    assert np.max(np.abs(dphi)) < 0.08
    np.testing.assert_allclose(got.modulation, true.modulation, atol=0.06)
    assert np.all(np.abs(est.residual_phase) < 0.05)
    assert est.problems() == []


def test_estimation_five_phases():
    truth = filaments((2 * N, 2 * N), seed=3, thickness=1.2)
    sim = simulate_sim(truth, rng=8, photons=200, n_phases=5)
    otf = RadialOTF.approximate(na=sim.na, wavelength=sim.wavelength)
    photons = camera_inverse(sim.frames, sim.camera)
    est = estimate_sim_parameters(photons, pixel_size=sim.pixel_size, otf=otf, n_phases=5,
                                  background=sim.background)
    assert est.pattern.phases.shape == (3, 5)
    np.testing.assert_allclose(est.pattern.frequencies, sim.pattern.frequencies, rtol=3e-3)
    dphi = np.angle(np.exp(1j * (_phase_at_centre(est.pattern, N, sim.pixel_size)
                                 - _phase_at_centre(sim.pattern, N, sim.pixel_size))))
    assert np.max(np.abs(dphi)) < 0.1


def test_band_separation_is_exact():
    rng = np.random.default_rng(0)
    bands = rng.standard_normal((3, 8, 8)) + 1j * rng.standard_normal((3, 8, 8))
    for phases in (np.array([0.3, 2.2, 4.4]), np.array([0.1, 1.4, 2.6, 3.9, 5.1])):
        frames = sum(np.exp(1j * o * phases)[:, None, None] * bands[j]
                     for j, o in enumerate((0, 1, -1)))
        np.testing.assert_allclose(separate_bands(frames, phases), bands, atol=1e-10)


def test_reconstruction_extends_frc_resolution(acquisition):
    sim, photons, otf = acquisition
    second = simulate_sim(sim.truth, rng=99, photons=300, pattern=sim.pattern)
    recs = [sim_reconstruct(p, pixel_size=sim.pixel_size, otf=otf, background=sim.background)
            for p in (photons, camera_inverse(second.frames, second.camera))]
    assert recs[0].image.shape == (2 * N, 2 * N) and recs[0].image.dtype == np.float32
    # FRC up to just inside the reconstructed passband (beyond it both spectra are zero and
    # only the FRC window's leakage is left): the first 1/7 crossing, or the band edge.
    fmax = 0.97 * recs[0].support
    f_sim = _frc_limit(recs[0].image, recs[1].image, recs[0].pixel_size, fmax)
    f_wf = _frc_limit(recs[0].widefield, recs[1].widefield, recs[0].pixel_size, fmax)
    cutoff = 2 * sim.na / sim.wavelength
    assert f_wf < 1.1 * cutoff  # widefield cannot pass the diffraction limit
    # SIM extends it by the pattern frequency (0.85 cutoff here: ideal gain 1.85).
    assert f_sim > 1.5 * f_wf
    # Closer to the ground truth than the (deconvolved) widefield image.
    c = slice(40, -40)  # away from the faded borders
    ssim_sim = normalized_ssim(recs[0].image[c, c], sim.truth[c, c])
    assert ssim_sim > normalized_ssim(recs[0].widefield_deconvolved[c, c], sim.truth[c, c]) + 0.03
    assert ssim_sim > normalized_ssim(recs[0].widefield[c, c], sim.truth[c, c]) + 0.03
    # Flux: photons per output pixel, a quarter of the raw pixel's.
    raw_mean = photons[:, 20:-20, 20:-20].mean() - sim.background
    assert recs[0].image[c, c].mean() == pytest.approx(raw_mean / 4, rel=0.05)


def test_estimate_flags_inconsistent_patterns(acquisition):
    from fluorecon.methods.classical.sim import SIMEstimate
    from fluorecon.simulate.sim import SIMPattern

    sim, _, _ = acquisition
    good = SIMEstimate(sim.pattern, np.ones(3), np.zeros(3))
    assert good.problems() == []
    k = sim.pattern.wavevectors.copy()
    k[1] *= 1.2
    bad = SIMEstimate(SIMPattern(k, sim.pattern.phases, np.array([0.8, 0.8, 0.02])),
                      np.ones(3), np.zeros(3))
    text = " ".join(bad.problems())
    assert "frequencies" in text and "modulation" in text


def test_known_pattern_reconstruction_uses_given_parameters(acquisition):
    sim, photons, otf = acquisition
    rec = sim_reconstruct(photons[:, :128, :128], pixel_size=sim.pixel_size, otf=otf,
                          background=sim.background, pattern=sim.pattern)
    assert rec.estimate is None and rec.pattern is sim.pattern
    assert rec.image.shape == (256, 256)


def test_input_validation(acquisition):
    sim, photons, otf = acquisition
    with pytest.raises(DataError, match="angle-major"):
        estimate_sim_parameters(photons[:8], pixel_size=sim.pixel_size, otf=otf)
    with pytest.raises(ConfigError):
        sim_reconstruct(photons, pixel_size=sim.pixel_size, otf=otf, wiener=-1.0)
    with pytest.raises(ConfigError):
        sim_pattern(3, 2, period=0.2)
    with pytest.raises(ConfigError):
        simulate_sim(np.ones((65, 64)), rng=0)
    with pytest.raises(DataError):
        simulate_sim(-np.ones((64, 64)), rng=0)


def test_otf_models():
    optics = RadialOTF.from_optics(na=1.4, wavelength=0.52, pixel_size=0.06)
    ideal = RadialOTF.approximate(na=1.4, wavelength=0.52)
    f = np.linspace(0, 6, 61)
    assert optics(np.array([0.0]))[0] == pytest.approx(1.0)
    assert np.all(optics(f[f >= optics.cutoff]) == 0)
    # The optics OTF includes the pixel MTF, so it lies at or below the ideal one.
    inside = f < 0.95 * ideal.cutoff
    assert np.all(optics(f[inside]) <= ideal(f[inside]) + 0.02)
    measured = RadialOTF.from_profile(ideal(np.arange(100) * 0.07) + 0j, 0.07)
    assert measured.cutoff == pytest.approx(ideal.cutoff, abs=0.1)


def test_mrc_reader_roundtrip(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    header = np.zeros(256, dtype="<i4")
    header[:4] = (4, 3, 2, 6)
    header[7:10] = (4, 3, 2)
    header[10:13] = np.array([0.4, 0.3, 0.5], dtype="<f4").view("<i4")
    path = tmp_path / "x.mrc"
    path.write_bytes(header.tobytes() + data.astype("<u2").tobytes())
    got = read_mrc(path)
    np.testing.assert_array_equal(got.data, data)
    assert got.spacing == pytest.approx((0.25, 0.1, 0.1))
    path.write_bytes(header.tobytes() + data.astype("<u2").tobytes()[:-2])
    with pytest.raises(InputFileError, match="truncated"):
        read_mrc(path)


@pytest.mark.realdata
def test_real_tirf_sim_frames_read(shared_data):
    folder = shared_data / "sim_rdl_microtubules"
    if not folder.is_dir():
        pytest.skip("sim_rdl_microtubules absent")
    raw = read_mrc(folder / "MT.mrc")
    assert raw.data.shape == (9, 256, 256)
    assert raw.spacing[1] == pytest.approx(0.0626, abs=1e-4)
    otf = RadialOTF.from_profile(read_mrc(folder / "TIRF488_cam1_0_z30_OTF2d.mrc").data,
                                 0.0312)
    assert 4.5 < otf.cutoff < 7.0
    # The physics of the estimate on these frames: tests/sim/test_sim_estimation_robust.py.


def test_camera_model_is_used():
    truth = filaments((128, 128), seed=0)
    ideal = simulate_sim(truth, rng=1, camera=CameraModel.ideal(), background=0.0)
    assert np.all(ideal.frames == np.round(ideal.frames)) and ideal.frames.min() >= 0
