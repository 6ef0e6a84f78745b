"""The dataset card (README.md) of an exported synthetic set, in the Hugging Face hub's format.

YAML header (licence, tasks, tags, size category, which files hold the data), then a Markdown
body: what a row is, how the set was made (method, settings, source dataset and its checksum,
the distil command), the preprocessing needed to use the spectrograms, the measured accuracy when
an ``avdistill evaluate --json`` file next to the set evaluated it, and how to load it.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from tabulate import tabulate

from avdistill.config import flat_fields
from avdistill.data.embedded import embedded_path
from avdistill.data.storage import read_header
from avdistill.errors import AVDistillError
from avdistill.methods import METHODS
from avdistill.spread import mean_std

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def size_category(rows: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if rows < limit), "n>1M")


def find_evaluation(synthetic: str | Path, source_sha256: str | None,
                    explicit: str | Path | None = None) -> dict | None:
    """The accuracies an ``avdistill evaluate --json`` file next to the set (or `explicit`) holds for it.

    Only records of this very file, evaluated on the set's own source dataset (same sha256), count.
    """
    synthetic = Path(synthetic).resolve()
    candidates = [Path(explicit)] if explicit else sorted(synthetic.parent.glob("*.json"))
    for path in candidates:
        try:
            record = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("results"), list):
            continue
        if source_sha256 and record.get("dataset_sha256") != source_sha256:
            continue
        rows = [r for r in _accuracy_records(record["results"])
                if _same_file(r.pop("synthetic"), synthetic, path.parent)]
        if rows:
            return {"file": path.name, "dataset": record.get("dataset"), "on": record.get("on", "test"),
                    "eval_config": record.get("eval_config"), "rows": rows}
    return None


def _accuracy_records(results: list) -> list[dict]:
    """{synthetic, head, encoder, accuracies} of each accuracy record (its settings hold what was evaluated)."""
    records = []
    for r in results:
        if isinstance(r, dict) and isinstance(r.get("accuracies"), list) and r["accuracies"]:
            settings = r.get("settings") if isinstance(r.get("settings"), dict) else r  # files older than the grid
            encoder = (settings.get("eval") or {}).get("encoder") if isinstance(settings.get("eval"), dict) else None
            records.append({"synthetic": settings.get("synthetic"), "head": settings.get("head"),
                            "encoder": encoder or settings.get("arch"), "accuracies": r["accuracies"]})
    return records


def _same_file(recorded: str | None, synthetic: Path, folder: Path) -> bool:
    """A recorded path (relative to where evaluate ran, unknown here) names `synthetic`."""
    if not isinstance(recorded, str):
        return False
    path = Path(recorded)
    if path.is_absolute():
        return path.resolve() == synthetic
    return (Path.cwd() / path).resolve() == synthetic or (folder / path.name).resolve() == synthetic


def distill_command(meta: dict) -> str | None:
    """The ``avdistill distill`` command that makes this set again, from its metadata."""
    spec = METHODS.get(meta.get("method"))
    if spec is None or "ipc" not in meta:
        return None
    source = meta.get("source") or {}
    path = source.get("path")
    data = source.get("name") if not path or Path(path).resolve() == embedded_path().resolve() else path
    if not data:
        return None
    words = ["avdistill", "distill", "--method", spec.name, "--data", str(data),
             "--ipc", str(meta["ipc"]), "--seed", str(meta.get("seed", 0))]
    if meta.get("device", "cpu") != "cpu":
        words += ["--device", str(meta["device"])]
    config = meta.get("config") or {}
    for name, (f, _) in flat_fields(spec.config_class).items():
        if name in config and config[name] != _json_default(f):
            value = config[name]
            value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            words += [f"--{name.replace('_', '-')}", value]
    command = " ".join(shlex.quote(w) for w in words)
    processes = meta.get("world_size", 1)
    return command if processes == 1 else command.replace(
        "avdistill distill", f"torchrun --nproc_per_node={processes} -m avdistill distill", 1)


def _json_default(f: dataclasses.Field):
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return list(value) if isinstance(value, tuple) else value


def _source_licence(meta: dict) -> str | None:
    """The licence text the source dataset's file records, if it can still be read."""
    path = (meta.get("source") or {}).get("path")
    if not path or not Path(path).is_file() or not str(path).endswith(".safetensors"):
        return None
    try:
        info = read_header(path)[1].get("info") or {}
    except AVDistillError:
        return None
    licence = info.get("licence") or info.get("license")
    return str(licence) if licence else None


def _yaml_list(values: list[str]) -> str:
    return "".join(f"\n- {json.dumps(v)}" for v in values)


def dataset_card(syn, dataset, record: dict, license: str | None = None) -> str:
    """README.md text for the exported `dataset` of `syn`; `record` is the export's export.json."""
    meta = syn.meta
    method, source = meta.get("method", "unknown method"), meta.get("source") or {}
    name = f"{method} IPC {syn.ipc}" + (f" of {source['name']}" if source.get("name") else "")
    packed = record["packed"] and syn.factor > 1
    header = (f"---\nlicense: {license or 'other'}\npretty_name: {json.dumps('avdistill ' + name)}\n"
              f"task_categories:{_yaml_list(['audio-classification', 'image-classification'])}\n"
              f"tags:{_yaml_list(['dataset-distillation', 'audio-visual', 'synthetic', 'avdistill'])}\n"
              f"size_categories:{_yaml_list([size_category(len(dataset))])}\n"
              "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n"
              "---\n")
    prep = syn.preprocessing
    mel = prep.mel
    columns = [("image", f"the frame, {prep.frame_size[0]}x{prep.frame_size[1]} "
                         f"{'grey' if prep.frame_channels == 1 else 'RGB'} uint8 pixels (PNG)")]
    if "audio" in dataset.features:
        columns.append(("audio", f"the spectrogram turned back into 1 s of sound at {mel.sample_rate} Hz "
                                 "(mel to linear by NNLS, phase by Griffin-Lim, 16-bit WAV): for listening, "
                                 "not what networks train on"))
    columns += [("spectrogram", f"the log-mel spectrogram in dB, float32 [{mel.n_mels} mels, {mel.n_frames} frames]: "
                                "what networks train on"),
                ("label", f"the class, one of {len(syn.classes)}: {', '.join(syn.classes)}")]
    rows_are = (f"stored pairs, each a {syn.factor}x{syn.factor} grid of cells (IDM factor {syn.factor}; "
                f"`avdistill.factor.expand` cuts each cell out and upsamples it, bilinear, to a full-size "
                f"training pair), so there is no audio column" if packed else
                "training pairs" + (f" ({syn.factor}² cells of each stored pair upsampled to full size, "
                                    f"IDM factor {syn.factor})" if syn.factor > 1 else ""))
    made = [("method", method), ("stored pairs per class (IPC)", syn.ipc), ("factor", syn.factor),
            ("rows", f"{len(dataset)} ({rows_are})"), ("seed", meta.get("seed")),
            ("source dataset", source.get("name")), ("source sha256", f"`{source.get('sha256')}`"),
            ("device, processes", f"{meta.get('device')}, {meta.get('world_size', 1)}"),
            ("wall time", f"{meta.get('wall_seconds')} s"),
            ("versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items()
                                   if k in ("avdistill", "torch", "numpy", "python")))]
    settings = sorted((meta.get("config") or {}).items())
    command = distill_command(meta)
    lines = [header, f"# {name}: a distilled audio-visual dataset\n",
             f"A synthetic set made by dataset distillation with avdistill: {len(syn.classes)} classes, "
             f"{syn.ipc} stored pair(s) per class, {len(dataset)} rows. Each row is one 1-second pair:\n",
             *[f"- `{c}`: {text}" for c, text in columns], "",
             "## How it was made\n", _table(["", ""], made), "",
             *(["Method settings (the method's whole configuration):\n", _table(["setting", "value"], settings), ""]
               if settings else [])]
    if command:
        lines += ["Command (from the set's metadata):\n", f"```bash\n{command}\n```\n"]
    if record.get("command"):
        lines += ["Exported with:\n", f"```bash\n{record['command']}\n```\n"]
    lines += ["## Preprocessing\n",
              "To train on these pairs together with real data, prepare the real data the same way:\n",
              _table(["", ""], [("audio", f"{mel.sample_rate} Hz mono, 1 s, log-mel dB: n_fft {mel.n_fft}, hop "
                                          f"{mel.hop_length}, {mel.n_mels} HTK mels, power to dB"),
                                ("frames", f"{prep.frame_size[0]}x{prep.frame_size[1]}, {prep.frame_channels} "
                                           "channel(s), uint8"),
                                ("model input, audio", f"(dB - {prep.audio_mean:g}) / {prep.audio_std:g}"),
                                ("model input, frames", f"(pixels / 255 - mean {list(prep.frame_mean)}) / std "
                                                        f"{list(prep.frame_std)}")]), ""]
    lines += ["## Accuracy\n", _accuracy(record.get("evaluation"), syn), ""]
    lines += ["## Loading\n", "```python\nfrom datasets import Audio, load_dataset, load_from_disk\n\n"
              "ds = load_dataset(\"parquet\", data_files=\"data/*.parquet\", split=\"train\")  "
              "# or load_dataset(\"USER/NAME\") from the hub,\n"
              "# or load_from_disk(\"THIS_FOLDER\") on the exported folder\n"
              + ("ds = ds.cast_column(\"audio\", Audio(decode=False))  # WAV bytes; decoding needs torchcodec\n"
                 if "audio" in dataset.features else "") + "```\n"]
    licence = _source_licence(meta)
    lines += ["## Licence\n", f"Declared above as `{license or 'other'}`." + (
        f" The source dataset's licence: {licence}." if licence else
        " A distilled set is derived from its source dataset: its licence follows the source's.")]
    return "\n".join(lines) + "\n"


def _accuracy(evaluation: dict | None, syn) -> str:
    if not evaluation:
        return ("No evaluation was found next to the set. `avdistill evaluate SET --json SET_FOLDER/eval.json` "
                "before exporting puts its accuracy here.")
    config = evaluation.get("eval_config") or {}
    rows = [(r["head"], r["encoder"], mean_std(r["accuracies"])) for r in evaluation["rows"]]
    protocol = ", ".join(f"{k} {config[k]}" for k in ("epochs", "steps", "lr", "batch_size") if k in config)
    return (f"Top-1 accuracy (%) on the real {evaluation.get('on', 'test')} split of {evaluation.get('dataset')}, "
            f"networks trained from scratch on this set (AVDD protocol{': ' + protocol if protocol else ''}), mean ± std over runs, from "
            f"`{evaluation['file']}`:\n\n" + _table(["head", "encoder", "accuracy"], rows))


def _table(headers: list[str], rows) -> str:
    return tabulate([[str(v) for v in r] for r in rows], headers=headers, tablefmt="github")
