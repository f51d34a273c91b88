"""Writing ONNX models atomically, with large weights as external data."""

from __future__ import annotations

import os
from pathlib import Path

import onnx

from workbench.errors import WorkbenchError
from workbench.files import create_temp_beside

DEFAULT_EXTERNAL_DATA_THRESHOLD = 1024 * 1024  # tensors of at least 1 MiB go to the side file


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike[str],
    *,
    external_data_threshold: int | None = DEFAULT_EXTERNAL_DATA_THRESHOLD,
) -> Path:
    """Write ``model`` to ``path`` atomically: temp files in the same folder, then ``os.replace``.

    With ``external_data_threshold`` set and at least one tensor that large, weights go to
    ``<name>.data`` beside the model (also replaced atomically). Nothing is left at ``path`` when
    writing fails. The caller's ModelProto is not modified. Both files get the mode of any new file
    (0o666 less the umask), so other users can read them as they could any file in that folder.
    """
    target = Path(path)
    if target.is_dir():
        raise WorkbenchError(f"cannot write the ONNX model to {target}: it is a directory; give a file path.")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.exists():
        raise WorkbenchError(f"cannot write the ONNX model to {target}: folder {folder} does not exist.")
    data_name = target.name + ".data"
    use_external = external_data_threshold is not None and any(
        _tensor_bytes(t) >= external_data_threshold for t in model.graph.initializer
    )
    tmp_model = create_temp_beside(target)
    tmp_data: Path | None = None
    try:
        if use_external:
            # onnx creates a missing external data file 0600 but appends to an existing one
            tmp_data = create_temp_beside(folder / data_name)
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            # onnx writes external data relative to the model file; write under a temp data name first
            onnx.save_model(
                copy,
                tmp_model,
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=tmp_data.name,
                size_threshold=external_data_threshold,
            )
            # point the model at the final data name, then move both into place (data first)
            final = onnx.load_model(tmp_model, load_external_data=False)
            for tensor in _external_tensors(final):
                for entry in tensor.external_data:
                    if entry.key == "location":
                        entry.value = data_name
            onnx.save_model(final, tmp_model)
            os.replace(tmp_data, folder / data_name)
        else:
            onnx.save_model(model, tmp_model)
        os.replace(tmp_model, target)
    except BaseException:
        for leftover in (tmp_model, tmp_data):
            if leftover is not None:
                leftover.unlink(missing_ok=True)
        raise
    return target


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    return len(tensor.raw_data) if tensor.HasField("raw_data") else 0


def _external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
