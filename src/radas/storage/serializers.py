"""How an artifact is written and read, chosen by the extension of its path.

==================  ======================================  ============================
extension           saves                                   loads as
==================  ======================================  ============================
``.pkl .pickle``    any object (cloudpickle: lambdas and     the object
                    locally defined classes survive)
``.json``           JSON values (dict with str keys, list,   the value
                    str, numbers; no NaN / Infinity)
``.txt``            ``str`` (UTF-8)                          ``str``
``.npy``            ``numpy.ndarray`` (not object dtype)     ``numpy.ndarray``
``.npz``            ``dict`` of name -> ``numpy.ndarray``    ``dict`` of arrays
``.parquet``        ``pandas.DataFrame`` (str column names)  ``pandas.DataFrame``
``.csv``            ``pandas.DataFrame`` (values, no index)  ``pandas.DataFrame``
``.pt .pth``        anything ``torch.save`` takes            the object (CPU tensors
                                                             when CUDA is unavailable)
anything else       ``bytes`` / ``bytearray`` / memoryview   ``bytes``
==================  ======================================  ============================

Each serializer checks the object before anything is written (``check``), streams it to a
binary file object (``dump``: a 1 GiB array is never copied in memory) and reads it back
(``load``).
"""

from __future__ import annotations

import io
import json
import pickle
import posixpath
from collections.abc import Mapping
from typing import IO, Any

from radas.errors import ArtifactTypeError, StorageError

PICKLE_HINT = "save it as '.pkl' instead (any Python object)"


class Serializer:
    """Writes and reads one kind of object. Subclasses override what differs."""

    extensions: tuple[str, ...] = ()
    holds = "bytes"

    def check(self, obj: Any, path: str) -> None:
        """Raise ArtifactTypeError when ``obj`` cannot be saved at ``path``."""

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        raise NotImplementedError

    def load(self, file: IO[bytes], path: str) -> Any:
        raise NotImplementedError

    def mismatch(
        self, obj: Any, path: str, hint: str = PICKLE_HINT, detail: str = ""
    ) -> ArtifactTypeError:
        stem = posixpath.splitext(path)[0]
        kind = type(obj).__qualname__
        if type(obj).__module__ != "builtins":
            kind = f"{type(obj).__module__}.{kind}"
        return ArtifactTypeError(
            f"Cannot save a {kind} as {path!r}: {self.label} holds {self.holds}"
            f"{f' ({detail})' if detail else ''}. Convert it first, or {hint} "
            f"(e.g. {stem + '.pkl'!r}). Nothing was written."
        )

    @property
    def label(self) -> str:
        return "/".join(self.extensions) if self.extensions else "a path without a known extension"


class PickleSerializer(Serializer):
    extensions = (".pkl", ".pickle")
    holds = "any picklable Python object"

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        from ray import cloudpickle

        try:
            cloudpickle.dump(obj, file, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:
            raise
        except Exception as err:  # whatever the object's __reduce__ raises
            raise ArtifactTypeError(
                f"Cannot save {path!r}: the object cannot be pickled ({err}). Keep open files, "
                "locks, sockets, clients and generators out of it (save their data instead). "
                "Nothing was written; an earlier version of the artifact is unchanged."
            ) from err

    def load(self, file: IO[bytes], path: str) -> Any:
        return pickle.load(file)


class JsonSerializer(Serializer):
    extensions = (".json",)
    holds = "JSON values (dict with str keys, list, str, int, float, bool, None)"

    def check(self, obj: Any, path: str) -> None:
        try:
            json.dumps(obj, allow_nan=False)
        except ValueError as err:  # NaN / Infinity: not JSON, other readers refuse them
            detail = f"{err}: JSON has no NaN or Infinity; replace them with None first"
            raise self.mismatch(obj, path, detail=detail) from err
        except TypeError as err:
            detail = f"{err}; convert numpy values with .tolist()"
            raise self.mismatch(obj, path, detail=detail) from err
        if keys := _non_str_keys(obj):
            detail = f"the key {keys[0]!r} is not a str, and would load back as {str(keys[0])!r}"
            raise self.mismatch(obj, path, detail=detail)

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        file.write(json.dumps(obj, allow_nan=False).encode("utf-8"))

    def load(self, file: IO[bytes], path: str) -> Any:
        return json.loads(file.read().decode("utf-8"))


class TextSerializer(Serializer):
    extensions = (".txt",)
    holds = "a str"

    def check(self, obj: Any, path: str) -> None:
        if not isinstance(obj, str):
            raise self.mismatch(obj, path, hint="str(obj) for text, or save it as '.pkl'")

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        file.write(obj.encode("utf-8"))

    def load(self, file: IO[bytes], path: str) -> Any:
        return file.read().decode("utf-8")


class NpySerializer(Serializer):
    extensions = (".npy",)
    holds = "one numpy.ndarray of numbers, bools or strings (not dtype=object)"

    def check(self, obj: Any, path: str) -> None:
        import numpy as np

        if not isinstance(obj, np.ndarray) or obj.dtype.hasobject:
            raise self.mismatch(
                obj, path, hint="use np.asarray(obj) for array-likes, or save it as '.pkl'"
            )

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        import numpy as np

        np.save(file, obj, allow_pickle=False)

    def load(self, file: IO[bytes], path: str) -> Any:
        import numpy as np

        return np.load(file, allow_pickle=False)


class NpzSerializer(Serializer):
    extensions = (".npz",)
    holds = "a dict of str -> numpy.ndarray (not dtype=object)"

    def check(self, obj: Any, path: str) -> None:
        import numpy as np

        if not isinstance(obj, Mapping) or not all(
            isinstance(key, str) and isinstance(value, np.ndarray) and not value.dtype.hasobject
            for key, value in obj.items()
        ):
            raise self.mismatch(obj, path, hint="save one array as '.npy', or anything as '.pkl'")

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        import numpy as np

        np.savez(file, **obj)

    def load(self, file: IO[bytes], path: str) -> Any:
        import numpy as np

        with np.load(file, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}


def _non_str_keys(value: Any) -> list[Any]:
    """Dict keys in ``value`` (nested too) that are not str: the first one found, or none."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return [key]
            if found := _non_str_keys(item):
                return found
    elif isinstance(value, (list, tuple)):
        for item in value:
            if found := _non_str_keys(item):
                return found
    return []


def _check_frame(serializer: Serializer, obj: Any, path: str) -> None:
    import pandas as pd

    if not isinstance(obj, pd.DataFrame):
        hint = "use obj.to_frame() for a Series, or save it as '.pkl'"
        raise serializer.mismatch(obj, path, hint=hint)


class ParquetSerializer(Serializer):
    extensions = (".parquet",)
    holds = "a pandas.DataFrame with str column names"

    def check(self, obj: Any, path: str) -> None:
        _check_frame(self, obj, path)
        others = [name for name in obj.columns if not isinstance(name, str)]
        if others:
            raise ArtifactTypeError(
                f"Cannot save this DataFrame as {path!r}: Parquet needs str column names, and "
                f"{len(others)} are not ({', '.join(map(repr, others[:5]))}). Rename them, "
                "e.g. df.columns = [str(c) for c in df.columns], or save it as '.pkl'. "
                "Nothing was written."
            )

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        try:
            obj.to_parquet(file)
        except (ValueError, TypeError, ImportError) as err:  # pyarrow's ArrowInvalid: ValueError
            raise ArtifactTypeError(
                f"Cannot save this DataFrame as {path!r}: Parquet refused it ({err}). Parquet "
                "needs str column names and one type per column: fix those, or save it as "
                "'.pkl'. Nothing was written; an earlier version is unchanged."
            ) from err

    def load(self, file: IO[bytes], path: str) -> Any:
        import pandas as pd

        return pd.read_parquet(file)


class CsvSerializer(Serializer):
    extensions = (".csv",)
    holds = "a pandas.DataFrame (its values and column names; the index is not written)"

    def check(self, obj: Any, path: str) -> None:
        _check_frame(self, obj, path)

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        text = io.TextIOWrapper(file, encoding="utf-8", newline="")
        try:
            obj.to_csv(text, index=False)
            text.flush()
        finally:
            text.detach()  # the caller closes the file

    def load(self, file: IO[bytes], path: str) -> Any:
        import pandas as pd

        return pd.read_csv(file)


class TorchSerializer(Serializer):
    extensions = (".pt", ".pth")
    holds = "what torch.save takes (tensors, state dicts, modules)"

    def check(self, obj: Any, path: str) -> None:
        self._torch(path)

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        torch = self._torch(path)
        try:
            torch.save(obj, file)
        except OSError:
            raise
        except Exception as err:
            raise ArtifactTypeError(
                f"Cannot save {path!r} with torch.save ({err}). Save the model's state_dict() "
                "rather than the model, or save it as '.pkl'. Nothing was written."
            ) from err

    def load(self, file: IO[bytes], path: str) -> Any:
        torch = self._torch(path)
        # radas wrote this file itself: full unpickling, like '.pkl'
        location = None if torch.cuda.is_available() else "cpu"
        return torch.load(file, map_location=location, weights_only=False)

    @staticmethod
    def _torch(path: str) -> Any:
        try:
            import torch
        except ImportError as err:
            raise StorageError(
                f"{path!r} is a PyTorch file ('.pt'/'.pth'), and torch is not installed in "
                "this environment. `pip install torch` (on the cluster: "
                "runtime_env={'pip': ['torch']}), or choose another extension."
            ) from err
        return torch


class RawSerializer(Serializer):
    holds = "bytes (or bytearray / memoryview)"

    def check(self, obj: Any, path: str) -> None:
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise ArtifactTypeError(
                f"Cannot save a {type(obj).__qualname__} as {path!r}: radas chooses the format "
                f"by extension, and {posixpath.splitext(path)[1] or 'no extension'!r} is not one "
                f"it knows, so it stores raw bytes only. Use one of {', '.join(KNOWN)} (e.g. "
                f"'.pkl' for any object), or pass bytes. Nothing was written."
            )

    def dump(self, obj: Any, file: IO[bytes], path: str) -> None:
        file.write(obj)

    def load(self, file: IO[bytes], path: str) -> Any:
        return file.read()


_SERIALIZERS: list[Serializer] = [
    PickleSerializer(),
    JsonSerializer(),
    TextSerializer(),
    NpySerializer(),
    NpzSerializer(),
    ParquetSerializer(),
    CsvSerializer(),
    TorchSerializer(),
]
BY_EXTENSION = {ext: s for s in _SERIALIZERS for ext in s.extensions}
KNOWN = tuple(BY_EXTENSION)
RAW = RawSerializer()


def serializer_for(path: str) -> Serializer:
    """The serializer for ``path``'s extension (case-insensitive); raw bytes for others.

    >>> type(serializer_for("models/w.NPY")).__name__
    'NpySerializer'
    """
    return BY_EXTENSION.get(posixpath.splitext(path)[1].lower(), RAW)
