"""DPM-Solver++(2M) against the exact probability-flow ODE on Gaussian data, where everything is closed form."""

from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler

from bundle_runtime.latent_diffusion import ConditionalLatentSampler
from bundle_runtime.solvers import DPMSolverMultistepScheduler, select_solver


def published_schedule() -> DDIMScheduler:
    """The brain LDM's schedule, as in the ukb profile (scaled linear betas 0.0015-0.0205, 1000 steps)."""
    return DDIMScheduler(1000, "scaled_linear_beta", beta_start=0.0015, beta_end=0.0205, clip_sample=False)


class GaussianData:
    """Data x0 ~ N(mean, std**2) per dimension: the exact noise predictor and ODE solution are closed form."""

    def __init__(self, scheduler: DDIMScheduler, size: int = 2000) -> None:
        self.alphas_cumprod = scheduler.alphas_cumprod.double()
        self.mean = torch.linspace(-1.0, 1.0, size, dtype=torch.float64)
        self.std = torch.linspace(0.3, 1.5, size, dtype=torch.float64).flip(0)

    def alpha_sigma(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.alphas_cumprod[t] ** 0.5, (1 - self.alphas_cumprod[t]) ** 0.5

    def noise_prediction(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """E[noise | x_t]: the ideal epsilon-prediction network."""
        alpha, sigma = self.alpha_sigma(t)
        return sigma * (x - alpha * self.mean) / (alpha**2 * self.std**2 + sigma**2)

    def ode_solution(self, x_start: torch.Tensor, t_start: int) -> torch.Tensor:
        """The probability-flow ODE keeps each dimension's standardised value, so its clean end is closed form."""
        alpha, sigma = self.alpha_sigma(t_start)
        standardised = (x_start - alpha * self.mean) / (alpha**2 * self.std**2 + sigma**2) ** 0.5
        return self.mean + self.std * standardised

    def sample(self, scheduler, steps: int, x_start: torch.Tensor) -> torch.Tensor:
        scheduler.set_timesteps(steps)
        x = x_start
        for t in scheduler.timesteps:
            x, _ = scheduler.step(self.noise_prediction(x, int(t)), int(t), x)
        return x


@pytest.fixture(scope="module")
def gaussian_case():
    data = GaussianData(published_schedule())
    x_start = torch.randn(len(data.mean), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return data, x_start, data.ode_solution(x_start, 999)


@pytest.mark.parametrize("steps", [10, 15, 20])
def test_dpmpp_2m_is_much_closer_to_the_exact_ode_solution_than_ddim_at_the_same_steps(gaussian_case, steps):
    data, x_start, exact = gaussian_case
    ddim_error = (data.sample(published_schedule(), steps, x_start) - exact).abs().max()
    dpm_error = (data.sample(select_solver("dpmpp_2m", published_schedule()), steps, x_start) - exact).abs().max()
    assert dpm_error < 0.25 * ddim_error, (steps, float(dpm_error), float(ddim_error))


def test_dpmpp_2m_at_20_steps_beats_ddim_at_50_and_nears_ddim_1000(gaussian_case):
    data, x_start, exact = gaussian_case
    dpm_20 = data.sample(select_solver("dpmpp_2m", published_schedule()), 20, x_start)
    ddim_50 = data.sample(published_schedule(), 50, x_start)
    ddim_1000 = data.sample(published_schedule(), 1000, x_start)
    assert (dpm_20 - exact).abs().max() < 0.5 * (ddim_50 - exact).abs().max()
    assert (dpm_20 - ddim_1000).abs().max() < 0.1


def test_the_solver_keeps_the_source_schedule_and_prediction_type():
    source = DDIMScheduler(1000, "scaled_linear_beta", beta_start=0.0015, beta_end=0.0205, prediction_type="sample")
    solver = select_solver("dpmpp_2m", source)
    assert isinstance(solver, DPMSolverMultistepScheduler)
    assert torch.equal(solver.alphas_cumprod, source.alphas_cumprod) and solver.prediction_type == "sample"
    assert select_solver("ddim", source) is source


@pytest.mark.parametrize("steps", [1, 2, 10, 50, 1000])
def test_timesteps_start_at_the_last_training_step_end_at_zero_and_strictly_decrease(steps):
    solver = select_solver("dpmpp_2m", published_schedule())
    solver.set_timesteps(steps)
    timesteps = solver.timesteps
    assert len(timesteps) == steps and int(timesteps[0]) == 999 and (steps == 1 or int(timesteps[-1]) == 0)
    assert bool((timesteps[:-1] > timesteps[1:]).all())


def test_the_latent_sampler_drives_the_solver_and_a_rerun_repeats_the_sample(gaussian_case):
    """The multistep state is reset per run: the same noise gives the same latent twice."""
    data = GaussianData(published_schedule(), size=8 * 4 * 4 * 4)

    def network(x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        flat = x[:, :8].double().reshape(x.shape[0], -1)
        return torch.stack([data.noise_prediction(row, int(timesteps[0])) for row in flat]).reshape(x[:, :8].shape)

    sampler = ConditionalLatentSampler(
        select_solver("dpmpp_2m", published_schedule()), 12, (8, 4, 4, 4), progress=False
    )
    noise = torch.randn(2, 8, 4, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    condition = torch.zeros(2, 1, dtype=torch.float64)
    first = sampler.sample_latent(network, condition, noise)
    assert torch.equal(first, sampler.sample_latent(network, condition, noise))
    exact = torch.stack([data.ode_solution(row, 999) for row in noise.reshape(2, -1)]).reshape(noise.shape)
    assert (first - exact).abs().max() < 0.15


def test_bad_solver_name_and_step_count_are_named():
    with pytest.raises(ValueError, match="solver='heun'"):
        select_solver("heun", published_schedule())
    with pytest.raises(ValueError, match="num_inference_steps=0"):
        select_solver("dpmpp_2m", published_schedule()).set_timesteps(0)
    with pytest.raises(ValueError, match="prediction_type='noise'"):
        DPMSolverMultistepScheduler(prediction_type="noise")


@pytest.mark.parametrize("solver_name", ["ddim", "dpmpp_2m"])
def test_x0_predictions_are_clipped_to_the_source_schedulers_bounds(solver_name):
    """A source DDIMScheduler with clip_sample bounds every x0 prediction, whichever solver samples."""
    source = DDIMScheduler(
        1000,
        "scaled_linear_beta",
        beta_start=0.0015,
        beta_end=0.0205,
        clip_sample=True,
        clip_sample_min=-2.0,
        clip_sample_max=3.0,
    )
    unclipped = DDIMScheduler(1000, "scaled_linear_beta", beta_start=0.0015, beta_end=0.0205, clip_sample=False)
    sample = torch.zeros(1, 2, 4, 4, 4)
    model_output = torch.linspace(-1, 1, sample.numel()).reshape(sample.shape)  # x0 = -output * sigma / alpha
    x0_per_solver = []
    for scheduler in (select_solver(solver_name, source), select_solver(solver_name, unclipped)):
        scheduler.set_timesteps(10)
        x0_per_solver.append(scheduler.step(model_output, int(scheduler.timesteps[0]), sample)[1])
    clipped, free = x0_per_solver
    assert float(free.min()) < -2.0 and float(free.max()) > 3.0  # the case needs clipping at both ends
    assert float(clipped.min()) == -2.0 and float(clipped.max()) == 3.0
    inside = (free > -2.0) & (free < 3.0)
    assert torch.equal(clipped[inside], free[inside])


def test_bad_clip_bounds_are_named():
    with pytest.raises(ValueError, match="clip_sample_values"):
        DPMSolverMultistepScheduler(clip_sample_values=(1.0, -1.0))


def clipped_schedule(bound: float = 4.0) -> DDIMScheduler:
    """The published schedule with every x0 prediction bounded to [-bound, bound] (the ``x0_clip`` key)."""
    return DDIMScheduler(
        1000,
        "scaled_linear_beta",
        beta_start=0.0015,
        beta_end=0.0205,
        clip_sample=True,
        clip_sample_min=-bound,
        clip_sample_max=bound,
    )


def test_a_clipped_step_moves_with_the_noise_implied_by_the_clipped_x0_not_the_networks():
    """Known answer of one clipped step from t = 999: alpha' * x0c + sigma' * (x - alpha * x0c) / sigma.

    MONAI's clipped DDIM keeps the network's noise instead (alpha' * x0c + sigma' * eps), a different point
    wherever the clip acts, which is why the two samplers disagree under ``x0_clip`` at every step count.
    """
    solver = select_solver("dpmpp_2m", clipped_schedule())
    solver.set_timesteps(10)
    t, t_next = (int(v) for v in solver.timesteps[:2])
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, generator=generator, dtype=torch.float64)
    noise = torch.randn(256, generator=generator, dtype=torch.float64)
    alphas_cumprod = solver.alphas_cumprod.double()
    alpha, sigma = alphas_cumprod[t] ** 0.5, (1 - alphas_cumprod[t]) ** 0.5
    alpha_next, sigma_next = alphas_cumprod[t_next] ** 0.5, (1 - alphas_cumprod[t_next]) ** 0.5
    raw_x0 = (x - sigma * noise) / alpha
    x0 = raw_x0.clamp(-4.0, 4.0)
    assert float((raw_x0.abs() > 4.0).double().mean()) > 0.5  # at t = 999 the clip acts on most entries
    next_sample, predicted_x0 = solver.step(noise, t, x)
    torch.testing.assert_close(predicted_x0, x0, rtol=0, atol=1e-12)
    implied_noise = (x - alpha * x0) / sigma
    torch.testing.assert_close(next_sample, alpha_next * x0 + sigma_next * implied_noise, rtol=0, atol=1e-12)
    assert float((next_sample - (alpha_next * x0 + sigma_next * noise)).abs().max()) > 0.01


def test_with_the_clip_acting_dpmpp_converges_with_steps_and_clipped_ddim_does_not(gaussian_case):
    """A noise predictor 5 % too large (a UNet's error, amplified by sigma / alpha in x0) makes the clip act.

    DPM-Solver++ with the clip settles (20 and 50 steps land on its 200-step sample), while MONAI's clipped
    DDIM at 50 steps is far from its own 200-step sample: its clip jump does not shrink with the step.
    """
    data, x_start, _ = gaussian_case

    def sample(scheduler, steps: int) -> torch.Tensor:
        scheduler.set_timesteps(steps)
        x = x_start
        for t in scheduler.timesteps:
            x, _ = scheduler.step(1.05 * data.noise_prediction(x, int(t)), int(t), x)
        return x

    dpm = {steps: sample(select_solver("dpmpp_2m", clipped_schedule()), steps) for steps in (20, 50, 200)}
    assert float((dpm[20] - dpm[200]).abs().max()) < 0.05
    assert float((dpm[50] - dpm[200]).abs().max()) < 0.01
    ddim_50, ddim_200 = sample(clipped_schedule(), 50), sample(clipped_schedule(), 200)
    assert float((ddim_50 - ddim_200).pow(2).mean().sqrt()) > 0.2
