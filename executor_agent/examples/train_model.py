"""The demo's training task: a small churn classifier (scikit-learn, generated data, no download).

Each call logs ``runs`` MLflow runs (one per regularisation strength) with params, per-epoch metrics
and the fitted model with its signature, then registers the best run's model as a new version of
``model_name``. Runs are linked to the control-room run and task through executor_agent.mlflow_run.
"""

from __future__ import annotations

from typing import Any

from executor_agent.mlflow_run import start_run, tag_registered_model
from executor_agent.task_output import progress

FEATURES = ("tenure_months", "monthly_spend", "support_tickets", "logins_per_week")


def churn_data(rows: int, seed: int) -> tuple[Any, Any]:
    """Generated customers and whether they churned: the same rows for the same seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.column_stack([
        rng.integers(1, 72, rows), rng.normal(60, 20, rows), rng.poisson(1.5, rows), rng.normal(5, 2, rows),
    ]).astype("float64")  # fmt: skip
    logit = -0.04 * x[:, 0] + 0.02 * x[:, 1] + 0.6 * x[:, 2] - 0.3 * x[:, 3] + rng.normal(0, 0.5, rows)
    return x, (logit > np.median(logit)).astype("int64")


def train(
    rows: int = 2000, seed: int = 7, epochs: int = 12, alphas: list[float] | None = None,
    model_name: str = "churn-classifier",
) -> dict[str, Any]:  # fmt: skip
    """Train one model per alpha, log each as an MLflow run, register the best; returns what was logged."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import SGDClassifier
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = churn_data(rows, seed)
    split = int(rows * 0.8)
    scaler = StandardScaler().fit(x[:split])
    x_train, x_test = scaler.transform(x[:split]), scaler.transform(x[split:])
    y_train, y_test = y[:split], y[split:]
    results = []
    for number, alpha in enumerate(alphas or [0.1, 0.01, 0.0001], start=1):
        with start_run(run_name=f"sgd-alpha-{alpha:g}") as run:
            mlflow.log_params({"alpha": alpha, "epochs": epochs, "rows": rows, "seed": seed, "loss": "log_loss"})
            classifier = SGDClassifier(loss="log_loss", alpha=alpha, random_state=seed)
            for epoch in range(1, epochs + 1):
                classifier.partial_fit(x_train, y_train, classes=np.array([0, 1]))
                scores = classifier.predict_proba(x_test)[:, 1]
                accuracy = float(accuracy_score(y_test, scores > 0.5))
                auc = float(roc_auc_score(y_test, scores))
                mlflow.log_metrics({"accuracy": accuracy, "auc": auc, "log_loss": float(log_loss(y_test, scores))},
                                   step=epoch)  # fmt: skip
            model = make_pipeline(scaler, classifier)
            frame = pd.DataFrame(x[split : split + 5], columns=list(FEATURES))
            mlflow.sklearn.log_model(
                model, name="model", signature=infer_signature(frame, model.predict(frame.to_numpy())),
                input_example=frame, pip_requirements=["scikit-learn", "pandas"],
            )  # fmt: skip
            coefficients = dict(zip(FEATURES, (float(c) for c in classifier.coef_[0]), strict=True))
            mlflow.log_dict({"coefficients": coefficients, "intercept": float(classifier.intercept_[0])},
                            "coefficients.json")  # fmt: skip
            results.append({"run_id": run.info.run_id, "alpha": alpha, "auc": auc})
        progress(f"trained alpha={alpha:g}", auc=round(auc, 4), stage=number, stages=len(alphas or [0] * 3))
    best = max(results, key=lambda r: r["auc"])
    version = mlflow.register_model(f"runs:/{best['run_id']}/model", model_name)
    tag_registered_model(model_name)
    return {"runs": results, "registered": {"model": model_name, "version": str(version.version),
                                            "run_id": best["run_id"]}}  # fmt: skip
