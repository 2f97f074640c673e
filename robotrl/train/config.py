"""Settings of the training loops (shared by ``scan_loop`` and ``host_loop``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    total_steps: int = 20_000  # env transitions to collect (summed over parallel envs)
    num_envs: int = 1  # parallel envs; one update call per vectorised env step
    learning_starts: int = 1_000  # transitions of uniform random actions before updates begin
    buffer_size: int = 1_000_000  # replay capacity in transitions
    log_every: int = 1_000  # transitions per logged row (and per jitted chunk of the scan loop)
    eval_every: int = 5_000  # transitions between evaluations (0: only at the end)
    eval_episodes: int = 10  # deterministic episodes per evaluation (0: never evaluate, e.g.
    # a robot that practises: its training is the measurement)
    checkpoint_every: int = 5_000  # transitions between checkpoints (0: only at the end)
    keep_checkpoints: int = 3  # orbax keeps this many latest checkpoints
    save_buffer: bool = True  # checkpoint the replay buffer too (exact resume)
    num_seeds: int = 1  # scan loop: seeds trained side by side in one vmapped program
    # Scan loop: devices each seed's env batch and minibatches are split over (parameters
    # replicated; ``robotrl.parallel``). Results do not depend on it, only speed does.
    data_parallel: int = 1
    # A dataset folder (``robotrl dataset collect``). With offline_fraction 1 the run is offline:
    # updates sample only the dataset, the env only evaluates, and steps count gradient steps
    # (num_envs 1). Below 1, an online run whose batches mix that share of dataset transitions
    # with its own (RLPD-style "retain the offline data").
    dataset: str = ""
    offline_fraction: float = 1.0
    # Fine-tuning: start from this run's (latest checkpoint's) algorithm state, every seed.
    init_from: str = ""
    # True: uniform random actions until learning_starts; False: the policy acts (WSRL's
    # warmup: the pretrained policy fills a fresh buffer before any gradient step).
    random_warmup: bool = True

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "log_every", "num_seeds", "data_parallel"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.eval_episodes < 0:
            raise ValueError("eval_episodes must be >= 0 (0: never evaluate)")
        if not 0.0 <= self.offline_fraction <= 1.0:
            raise ValueError("offline_fraction must be in [0, 1]")
        if self.offline and self.num_envs != 1:
            raise ValueError("an offline run (dataset) counts gradient steps: num_envs must be 1")
        if self.log_every % self.num_envs:
            raise ValueError(
                f"log_every ({self.log_every}) must be a multiple of num_envs ({self.num_envs})"
            )
        if self.num_envs % self.data_parallel:
            raise ValueError(
                f"num_envs ({self.num_envs}) must be a multiple of data_parallel "
                f"({self.data_parallel}): each device steps an equal share of the envs"
            )
        for name in ("learning_starts", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def offline(self) -> bool:
        """Trains on ``dataset`` alone (no env steps)."""
        return bool(self.dataset) and self.offline_fraction >= 1.0
