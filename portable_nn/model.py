"""``Model``: the book's add / set / finalize / train / evaluate / predict.

``Model`` only composes: the layer stack is a ``Network``; ``train``,
``evaluate`` and ``predict`` check their arguments and hand over in
``training.calls`` (the engine, its runners, the guard and the data checks
live in ``portable_nn.training``); files are ``io``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import _xp, io, state_dict, summary
from ._typing import Array, LayerLike
from .accuracy import Accuracy
from .losses import Loss, fused_loss
from .network import Network, is_layer
from .optimizers import Optimizer
from .training import History, Plan, calls

__all__ = ["History", "Model"]


class Model:
    """A stack of layers trained with one loss, optimizer and accuracy."""

    def __init__(self) -> None:
        self.layers: list[Any] = []
        self.loss: Loss | None = None
        self.optimizer: Optimizer | None = None
        self.accuracy: Accuracy | None = None
        self.network = Network(self.layers)
        self.plan: Plan | None = None
        # saved with the model and loaded back: JSON values only (the command line stores the data set's name)
        self.metadata: dict[str, Any] = {}
        self.stop_training = False  # a callback may set it: train stops at the epoch's end
        self.rank = 0  # this process's rank in data-parallel training

    def __repr__(self) -> str:
        layers = ", ".join(repr(layer) for layer in self.layers)
        return f"Model([{layers}], loss={self.loss!r}, optimizer={self.optimizer!r})"

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A text table: each layer, its output shape, parameter count and dtype; totals; where it is placed.

        ``print(model.summary())``; ``input_shape``: one image's ``(h, w, c)``, for the shapes after it.
        """
        return summary.table(self, input_shape)

    # -- building -----------------------------------------------------------
    def add(self, layer: LayerLike) -> Model:
        """Append a layer (a ``Layer``, or any object with the book's ``forward``/``backward``); returns the model."""
        if not is_layer(layer):
            raise TypeError(f"Model.add: expected a layer with forward/backward, got {type(layer).__name__}")
        self.layers.append(layer)
        self.plan = None
        return self

    def set(self, *, loss: Loss | None = None, optimizer: Optimizer | None = None,
            accuracy: Accuracy | None = None) -> Model:
        """Set the loss, the optimizer (a new one starts from fresh state) and the accuracy; returns the model."""
        self.loss = loss if loss is not None else self.loss
        if optimizer is not None and optimizer is not self.optimizer:  # a new optimizer starts from fresh state
            for p in self.network.parameters():
                for key in list(p.state):
                    p.set_state(key, None)
            self.optimizer = optimizer
        self.accuracy = accuracy if accuracy is not None else self.accuracy
        self.plan = None
        return self

    def finalize(self) -> Model:
        """Check the layer chain; fuse the last layer with the loss where a pairing is declared."""
        if not self.layers:
            raise ValueError("Model.finalize: the model has no layers; call model.add(...) first")
        if self.loss is None:
            raise ValueError("Model.finalize: no loss; call model.set(loss=..., optimizer=..., accuracy=...) first")
        self.network.skip_first_dinput()
        self.network.check_chain()
        if self.accuracy is None:
            self.accuracy = self.loss.default_accuracy()
        self.loss.remember_trainable_layers(self.network.trainable)
        self.plan = Plan(self.network, self.loss, self.accuracy, self.optimizer,
                         fused_loss(self.layers[-1], self.loss))
        return self

    @property
    def trainable_layers(self) -> list[Any]:
        return self.network.trainable

    def _require(self, what: str, *, optimizer: bool = False) -> Plan:
        if self.plan is None:
            raise RuntimeError(f"Model.{what}: call model.set(loss=..., optimizer=...) and model.finalize() first")
        if optimizer and self.optimizer is None:
            raise RuntimeError(f"Model.{what}: no optimizer; call model.set(optimizer=...) and finalize()")
        return self.plan

    # -- placement and forward ------------------------------------------------
    def to(self, *, like: Array) -> Model:
        """Move parameters and optimizer state to the library and device of ``like``.

        DLPack where both libraries share memory, the host otherwise.  The
        explicit way to move a trained model (e.g. from CuPy to NumPy).
        """
        self.network.to(like)
        if self.accuracy is not None:
            self.accuracy.to(like)
        return self

    def forward(self, x: Array, training: bool = False) -> Array:
        """The output of the last layer (probabilities for Softmax)."""
        return self.network.forward(x, training)

    # -- training and inference -------------------------------------------------
    def train(
        self,
        X: Array,
        y: Array,
        *,
        epochs: int = 1,
        batch_size: int | None = None,
        print_every: int | None = None,
        validation_data: tuple[Array, Array] | None = None,
        validation_split: float | None = None,
        shuffle: bool | None = None,
        seed: int | None = None,
        verbose: bool = True,
        callback: Callable[[dict[str, Any]], None] | None = None,
        compile: bool | str = "auto",
        distributed: Any = None,
        callbacks: Any = None,
        sample_weight: Any = None,
        class_weight: Any = None,
        metrics: Any = None,
    ) -> History:
        """Train; return per-epoch loss, accuracy, learning rate and validation figures.

        Reports happen every ``print_every`` optimizer steps (default: each epoch's end, as Keras) and at the last
        step; only they read values back from the device.  ``shuffle`` (default: where there are mini-batches)
        draws each epoch's order from ``seed``; the book's order fails on class-sorted data (README: conventions).
        A non-finite loss raises ``FloatingPointError`` naming the epoch and step (the policy per kind of backend:
        ``training/guard.py``).  Not thread-safe.

        ``compile``: ``"auto"`` compiles where it pays off (JAX: blocks of epochs under one ``jax.jit``, reported
        when each ends), ``True`` also on PyTorch (``torch.compile``), ``False`` never (``training/runners.py``).

        ``distributed``: True (``MPI.COMM_WORLD``) or an MPI communicator: data-parallel training, every rank
        calling ``train`` with the same data and arguments (``portable_nn/distributed.py``).

        ``validation_split``: the last fraction of the rows (before shuffling, as Keras) validates.

        ``callbacks``: ``portable_nn.callbacks`` objects (``EarlyStopping``, ``ModelCheckpoint``,
        ``ReduceLROnPlateau`` or your own), run at each epoch's end; one returning True stops training and the
        ``History`` so far is returned.

        ``sample_weight`` (one weight per row) and ``class_weight`` (a dict ``{class: weight}``, or ``"balanced"``:
        ``n / (classes present * count)``) weight each sample's loss and gradient; the two multiply.  The loss is
        ``sum_i w_i L_i / n`` (Keras's convention) and so is the History's; accuracy and validation figures are
        not weighted.

        ``metrics``: ``portable_nn.metrics`` objects or names scored at each epoch's end on the training and
        validation data (``val_<name>``); in ``history.metrics`` and the callbacks' logs
        (``EarlyStopping("val_f1")``).  Dask training data are not scored (read once an epoch).
        """
        plan = self._require("train", optimizer=True)
        return calls.train(self, plan, X, y, epochs=epochs, batch_size=batch_size, print_every=print_every,
                           validation_data=validation_data, validation_split=validation_split, shuffle=shuffle,
                           seed=seed, verbose=verbose, callback=callback, compile=compile, distributed=distributed,
                           callbacks=callbacks, sample_weight=sample_weight, class_weight=class_weight,
                           metrics=metrics)

    def evaluate(self, X: Array, y: Array, *, batch_size: int | None = None, compile: bool | str = "auto",
                 metrics: Any = None) -> Any:
        """Mean data loss and accuracy on ``(X, y)``, as host floats (``compile``: as in ``train``).

        ``metrics``: ``portable_nn.metrics`` objects (precision, recall, F1, top-k accuracy, MAE); then
        ``(loss, accuracy, {name: value})`` is returned, the metrics computed from counts on the device.
        """
        return calls.evaluate(self, self._require("evaluate"), X, y, batch_size=batch_size, compile=compile,
                              metrics=metrics)

    def predict(self, X: Array, *, batch_size: int | None = None, compile: bool | str = "auto") -> Array:
        """The model's output for ``X``, an array of X's library and device (lazy on Dask).

        Writes no layer state (after the first call has placed the parameters).
        """
        return calls.predict(self, X, batch_size=batch_size, compile=compile)

    # -- parameters and files -----------------------------------------------
    def get_parameters(self) -> list[tuple[Array, ...]]:
        """``[(weight, bias), ...]`` of the trainable layers, in order: copies, which later training leaves alone."""
        return [tuple(_xp.namespace(p.value).asarray(p.value, copy=True) for p in layer.parameters())
                for layer in self.network.trainable]

    def set_parameters(self, parameters: Any) -> None:
        """Assign ``[(weight, bias), ...]``; arrays move to where the model lives, in its dtype."""
        io.assign_parameters(self.network.trainable, list(parameters), "Model.set_parameters")

    def save_parameters(self, path: Any) -> None:
        """Only the trainable parameters (load them into a model of the same architecture)."""
        io.save_parameters(self.network.trainable, path)

    def load_parameters(self, path: Any) -> None:
        io.load_parameters(self.network.trainable, path)

    def save_weights(self, path: Any) -> None:
        """``.safetensors``: PyTorch's ``state_dict`` of the equivalent ``nn.Sequential`` (``state_dict.py``)."""
        state_dict.save_weights(self, path)

    def load_weights(self, path: Any) -> None:
        """Read ``save_weights``'s file (or a PyTorch ``nn.Sequential``'s safetensors); a key that does not fit is
        one ``ValueError`` naming it, and nothing is assigned."""
        state_dict.load_weights(self, path)

    def save(self, path: Any) -> None:
        """Architecture (JSON), parameters, optimizer state and ``metadata`` in one ``.npz``; no pickle."""
        io.save_model(path, self.layers, self.network.trainable, self.loss, self.accuracy, self.optimizer,
                      self.metadata)

    def export_onnx(self, path: Any, *, n_features: int | None = None, dtype: Any = None,
                    batch: str | int = "N", input_shape: tuple[int, ...] | None = None) -> None:
        """``predict`` as an ONNX file (written atomically): the same forward pass run on ndonnx arrays.

        Input ``"input"`` of shape ``(batch, n_features)`` (``batch``: a dimension name, dynamic, or a fixed
        size), output ``"output"``; images: ``input_shape=(height, width, channels)``.  ``dtype`` float32 or
        float64 (default: the model's).  Needs ``pip install 'portable_nn[onnx]'``.
        """
        from .export import export_onnx

        export_onnx(self, path, n_features=n_features, dtype=dtype, batch=batch, input_shape=input_shape)

    @classmethod
    def load(cls, path: Any, *, max_bytes: int = io.MAX_BYTES) -> Model:
        """A finalized model with host NumPy parameters (placed at the first forward); at most ``max_bytes``."""
        parts = io.read_model(path, max_bytes)
        model = cls()
        model.metadata = parts.metadata
        for layer in parts.layers:
            model.add(layer)
        model.set(loss=parts.loss, accuracy=parts.accuracy, optimizer=parts.optimizer)
        if model.loss is not None:
            try:
                model.finalize()
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        io.assign_arrays(model.network.trainable, parts.arrays, path, with_state=True)
        return model


