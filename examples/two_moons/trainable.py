"""A small neural network on scikit-learn's two-moons data, in plain NumPy.

Reports the training loss, validation loss and validation accuracy after every epoch, so
radas's history DataFrame holds one learning curve per trial.
"""

from __future__ import annotations

import itertools

import numpy as np
from sklearn.datasets import make_moons

import radas


def load_data(seed: int, n_samples: int = 1000, noise: float = 0.2):
    features, labels = make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    labels = labels.astype(np.float64)[:, None]
    split = int(0.8 * n_samples)
    return (features[:split], labels[:split]), (features[split:], labels[split:])


class MLP:
    """2 -> hidden -> hidden -> 1, tanh hidden units, sigmoid output, binary cross-entropy."""

    def __init__(self, hidden: int, rng: np.random.Generator) -> None:
        sizes = [2, hidden, hidden, 1]
        self.weights = [
            rng.normal(0.0, np.sqrt(1.0 / fan_in), size=(fan_in, fan_out))
            for fan_in, fan_out in itertools.pairwise(sizes)
        ]
        self.biases = [np.zeros(fan_out) for fan_out in sizes[1:]]

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        activations = [x]
        for layer, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = activations[-1] @ w + b
            last = layer == len(self.weights) - 1
            activations.append(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))) if last else np.tanh(z))
        return activations

    def loss_and_accuracy(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        p = np.clip(self.forward(x)[-1], 1e-7, 1 - 1e-7)
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        return loss, float(np.mean((p > 0.5) == (y > 0.5)))

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> None:
        activations = self.forward(x)
        delta = (activations[-1] - y) / len(x)  # dLoss/dz of the sigmoid output with BCE
        for layer in reversed(range(len(self.weights))):
            grad_w = activations[layer].T @ delta
            grad_b = delta.sum(axis=0)
            if layer > 0:
                delta = (delta @ self.weights[layer].T) * (1.0 - activations[layer] ** 2)
            self.weights[layer] -= lr * grad_w
            self.biases[layer] -= lr * grad_b


def train_two_moons(config: dict) -> None:
    """Train for ``config["epochs"]`` epochs of minibatch SGD with ``config["lr"]``."""
    seed = radas.config_seed(config)
    (x_train, y_train), (x_val, y_val) = load_data(seed)
    rng = np.random.default_rng(seed)
    model = MLP(config.get("hidden", 16), rng)
    batch_size = config.get("batch_size", 32)
    for epoch in range(1, config["epochs"] + 1):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            model.sgd_step(x_train[batch], y_train[batch], config["lr"])
        train_loss, _ = model.loss_and_accuracy(x_train, y_train)
        val_loss, val_accuracy = model.loss_and_accuracy(x_val, y_val)
        radas.report(
            {"epoch": epoch, "loss": train_loss, "val_loss": val_loss, "accuracy": val_accuracy}
        )
