"""Realistic sample data for trying the dashboard: ``pfd-db demo``.

Everything is drawn from one seeded random generator, so the same seed gives
the same data. Names carry the seed, so two seeds can share a database.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from pfd_db.models import Dataset, Experiment, ExperimentStatus, HPOMethod, User
from pfd_db.progress import Progress, no_progress
from pfd_db.seed import FAULT_TYPES, SEVERITY_LEVELS
from pfd_db.store.ml import campaigns, curves, datasets, experiments, search, tags

MODEL_TYPES = ("cnn1d", "resnet1d", "lstm", "transformer", "wavenet", "random_forest")
SEVERITY_FACTOR = {"incipient": 1.2, "mild": 1.6, "moderate": 2.3, "severe": 3.4}
# Typical vibration RMS (g) and kurtosis of a healthy machine and of each fault.
FAULT_SIGNATURE = {
    "normal": (0.45, 3.0),
    "misalignment": (0.9, 3.4),
    "imbalance": (1.1, 3.1),
    "looseness": (1.0, 4.6),
    "lubrication": (0.7, 5.2),
    "cavitation": (0.8, 6.0),
    "wear": (0.75, 6.8),
    "oil_whirl": (0.95, 3.8),
    "combined_misalign_imbalance": (1.3, 3.6),
    "combined_wear_lube": (0.85, 7.4),
    "combined_cavit_jeu": (1.0, 6.4),
}
TAGS = {
    "baseline": "#6c757d",
    "production-candidate": "#198754",
    "needs-review": "#dc3545",
    "augmented": "#0d6efd",
    "fft-features": "#6f42c1",
}
NOTE_WORDS = (
    "bearing vibration spectrum envelope kurtosis misalignment imbalance wear lubrication "
    "cavitation augmentation dropout overfitting plateau learning-rate warmup "
    "early-stopping pump gearbox motor sensor accelerometer noisy robust baseline ablation"
).split()
FINAL_STATUSES = [ExperimentStatus.COMPLETED] * 7 + [
    ExperimentStatus.FAILED,
    ExperimentStatus.CANCELLED,
]


@dataclass
class DemoSummary:
    datasets: int = 0
    signals: int = 0
    experiments: int = 0
    epochs: int = 0
    tags: int = 0
    hpo_trials: int = 0
    nas_trials: int = 0
    saved_searches: int = 0
    counts: dict[str, int] = field(default_factory=dict)


def steps(experiment_count: int) -> int:
    """How many progress ticks :func:`build_demo` makes."""
    return 4 + experiment_count


def build_demo(
    session: Session,
    owner: User,
    *,
    experiment_count: int = 24,
    seed: int = 42,
    progress: Progress = no_progress,
) -> DemoSummary:
    """Fill the database with a demo set drawn from ``seed``; flushes, the caller commits."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    summary = DemoSummary()
    total = steps(experiment_count)
    progress("datasets and signals", 0, total)
    dataset = _dataset(session, rng, seed, owner, summary)
    made = []
    for index in range(experiment_count):
        progress(f"experiment {index + 1} of {experiment_count}", 1 + index, total)
        made.append(_experiment(session, rng, seed, index, dataset, owner, summary))
    progress("tags", 1 + experiment_count, total)
    _tag(session, rng, made, owner, summary)
    progress("hyper-parameter and architecture searches", 2 + experiment_count, total)
    _campaigns(session, rng, seed, dataset, owner, made, summary)
    progress("saved searches", 3 + experiment_count, total)
    _saved_searches(session, seed, owner, summary)
    session.flush()
    return summary


def _dataset(
    session: Session, rng: random.Random, seed: int, owner: User, summary: DemoSummary
) -> Dataset:
    dataset = datasets.register_dataset(
        session,
        f"demo-{seed}-bearings",
        FAULT_TYPES,
        SEVERITY_LEVELS,
        f"data/demo/bearings-{seed}.h5",
        description="Synthetic bearing vibration signals for the demo.",
        meta_data={"sampling_rate_hz": 20_000, "duration_s": 5, "seed": seed},
        created_by=owner.id,
    )
    rows = [
        _signal(rng, f"s{seed}-{fault[:6]}-{severity[:3]}-{n:03d}", fault, severity)
        for fault in FAULT_TYPES
        for severity in SEVERITY_LEVELS
        for n in range(8)
    ]
    summary.signals = datasets.add_signals(session, dataset, rows)
    summary.datasets = 1
    return dataset


def _signal(rng: random.Random, signal_id: str, fault: str, severity: str) -> dict[str, Any]:
    rms, kurtosis = FAULT_SIGNATURE[fault]
    factor = 1.0 if fault == "normal" else SEVERITY_FACTOR[severity]
    return {
        "signal_id": signal_id,
        "fault_class": fault,
        "severity": severity,
        "rms": round(rms * factor * rng.uniform(0.9, 1.1), 4),
        "kurtosis": round(kurtosis * math.sqrt(factor) * rng.uniform(0.92, 1.08), 3),
        "dominant_frequency": round(rng.choice((29.5, 59.0, 118.0, 157.3)) * factor, 1),
    }


def _experiment(
    session: Session,
    rng: random.Random,
    seed: int,
    index: int,
    dataset: Dataset,
    owner: User,
    summary: DemoSummary,
) -> Experiment:
    model = MODEL_TYPES[index % len(MODEL_TYPES)]
    lr = rng.choice((3e-4, 1e-3, 3e-3))
    hyper = {"learning_rate": lr, "batch_size": rng.choice((32, 64, 128)), "dropout": 0.2}
    experiment = experiments.create_experiment(
        session,
        f"demo-{seed}-{model}-{index + 1:03d}",
        model,
        dataset,
        {"model": model, "input": "raw_vibration", "window": 4096},
        hyperparameters=hyper,
        notes=" ".join(rng.sample(NOTE_WORDS, 6)),
        created_by=owner.id,
    )
    experiments.transition(session, experiment, ExperimentStatus.RUNNING)
    curve = _training_curve(rng, lr, epochs=rng.randint(20, 60))
    summary.epochs += curves.log_epochs(session, experiment, curve)
    final = rng.choice(FINAL_STATUSES) if index >= 2 else ExperimentStatus.COMPLETED
    best = max(row["val_accuracy"] for row in curve)
    metrics = {"val_accuracy": round(best, 4), "test_accuracy": round(best - 0.01, 4)}
    experiments.finish(
        session, experiment, metrics, duration_seconds=len(curve) * 41.5, status=final
    )
    summary.experiments += 1
    return experiment


def _training_curve(rng: random.Random, lr: float, epochs: int) -> list[dict[str, Any]]:
    """Losses that fall and flatten, validation that lags and overfits a little; the
    validation F1 and AUC as extra metrics."""
    ceiling = rng.uniform(0.88, 0.99)
    speed = rng.uniform(0.08, 0.2) * (lr / 1e-3) ** 0.3
    rows = []
    for epoch in range(epochs):
        learned = 1 - math.exp(-speed * (epoch + 1))
        overfit = max(0, epoch - epochs * 0.7) * 0.004
        train_acc = min(0.999, 0.1 + (ceiling + 0.02 - 0.1) * learned + rng.gauss(0, 0.004))
        val_acc = min(0.995, 0.1 + (ceiling - 0.1) * learned - overfit + rng.gauss(0, 0.008))
        rows.append(
            {
                "epoch": epoch,
                "train_loss": round(2.4 * (1 - learned) + 0.03 + abs(rng.gauss(0, 0.01)), 5),
                "val_loss": round(
                    2.4 * (1 - learned) + 0.08 + overfit * 5 + abs(rng.gauss(0, 0.02)), 5
                ),
                "train_accuracy": round(train_acc, 5),
                "val_accuracy": round(val_acc, 5),
                "learning_rate": lr * 0.5 ** (epoch // 15),
                "duration_seconds": round(rng.uniform(35, 48), 2),
                "metrics": {
                    "val_f1": round(max(0.0, val_acc - rng.uniform(0.005, 0.03)), 5),
                    "val_auc": round(min(0.9999, 0.5 + (val_acc - 0.1) * 0.56), 5),
                },
            }
        )
    return rows


def _tag(
    session: Session,
    rng: random.Random,
    made: list[Experiment],
    owner: User,
    summary: DemoSummary,
) -> None:
    for name, color in TAGS.items():
        tag = tags.get_or_create_tag(session, name, color=color, created_by=owner.id)
        chosen = rng.sample(made, k=max(1, len(made) // 3))
        tags.bulk_tag(session, chosen, tag, added_by=owner.id)
        summary.tags += 1


def _campaigns(
    session: Session,
    rng: random.Random,
    seed: int,
    dataset: Dataset,
    owner: User,
    made: list[Experiment],
    summary: DemoSummary,
) -> None:
    trials = [e for e in made if e.model_type == "cnn1d" and e.metrics]
    hpo = campaigns.create_hpo_campaign(
        session,
        f"demo-{seed}-cnn1d-bayesian",
        HPOMethod.BAYESIAN,
        "cnn1d",
        dataset,
        {"learning_rate": [3e-4, 3e-3], "batch_size": [32, 64, 128]},
        {"max_trials": max(len(trials), 1), "timeout_hours": 12},
        max(len(trials), 1),
        created_by=owner.id,
    )
    for experiment in trials:
        campaigns.record_trial(session, hpo, experiment)
        summary.hpo_trials += 1
    nas = campaigns.create_nas_campaign(
        session,
        f"demo-{seed}-nas",
        dataset,
        search_algorithm="evolution",
        num_trials=8,
        search_space_config={"layers": [2, 6], "channels": [16, 128]},
    )
    for _ in range(8):
        layers = rng.randint(2, 6)
        architecture = {"layers": layers, "channels": rng.choice((16, 32, 64, 128)), "kernel": 7}
        accuracy = rng.uniform(0.8, 0.97)
        campaigns.add_trial(
            session,
            nas,
            architecture,
            {
                "validation_accuracy": round(accuracy, 4),
                "validation_loss": round(1 - accuracy, 4),
                "training_time": round(rng.uniform(300, 900), 1),
                "num_parameters": layers * 45_000,
            },
        )
    summary.nas_trials = len(campaigns.trials(session, nas))


def _saved_searches(session: Session, seed: int, owner: User, summary: DemoSummary) -> None:
    wanted = {
        f"demo {seed}: strong CNNs": ("model:cnn1d metric.val_accuracy>0.95", True),
        f"demo {seed}: failures": ("status:failed", False),
        f"demo {seed}: misalignment studies": ("misalignment -tag:baseline", False),
    }
    for name, (query, pinned) in wanted.items():
        search.save_search(session, owner, name, query, pinned=pinned)
        summary.saved_searches += 1
