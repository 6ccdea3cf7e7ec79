"""``glimpse eval ADAPTER PATH``: the command-line face of the harness (Typer sub-app)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(
    help="Score search configurations on a retrieval benchmark and write a report (JSON, Markdown, HTML).",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)

Out = Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder. Default: ./glimpse-eval/ADAPTER")]
Codes = Annotated[str, typer.Option(help="Binary codes to compare with exact float: BINARIZER:BITS[:asym|:cascade], "
                                         "comma-separated, e.g. learned:256,itq:128. Each is scored with and "
                                         "without re-rank. Empty: float only.")]
Encoders = Annotated[Optional[str], typer.Option("--encoder", help="Encoder(s), comma-separated. Default: the default encoder.")]
Seed = Annotated[int, typer.Option(min=0, help="Seed for augmentations, sampling and binarizer fitting.")]
Cache = Annotated[Optional[Path], typer.Option(help="Embedding cache folder. Default: ~/.glimpse/eval (or $GLIMPSE_EVAL_CACHE).")]
Refine = Annotated[str, typer.Option(help="Also score each configuration with a refinement stage on its top 100: aqe, superglobal (comma-separated).")]
Shortlist = Annotated[int, typer.Option(help="Code candidates re-ranked exactly per query (eval's own default; a collection "
                                              "re-ranks k x its code kind's oversample).")]
Model = Annotated[Optional[str], typer.Option(help="open_clip/hf encoders: the model (as in `glimpse index --model`).")]
Pretrained = Annotated[Optional[str], typer.Option(help="open_clip encoder: the weights (tag, hf-hub:org/name, file or folder).")]
Device = Annotated[Optional[str], typer.Option(help="open_clip/hf encoders: cpu, cuda or cuda:N.")]
Backend = Annotated[str, typer.Option(help="Where the configurations search: local (the engine's in-process backends), "
                                            "milvus (Milvus Lite for this run, the milvus extra), or a Milvus: "
                                            "milvus-lite:///path/eval.db or milvus://HOST:PORT/NAME.")]
#: Encoders that take --model/--pretrained/--device.
MODEL_ENCODERS = ("open_clip", "hf")


def _run(load, out: Optional[Path], codes: str, encoder: Optional[str], seed: int, cache: Optional[Path],
         shortlist: int, adapt: str = "", refine: str = "", model_options: dict | None = None,
         fusion: str = "", backend: str = "local") -> None:
    from ..encoders import DEFAULT_ENCODER, create_encoder
    from ..extras import MissingExtraError, require
    from .configs import parse_configs
    from .datasets import DatasetError
    from .report import markdown, write_report
    from .runner import evaluate

    try:
        require("eval", "glimpse eval")  # before the hours of embedding, not at the report
        fusions = [f.strip() for f in fusion.split(",") if f.strip()]
        if fusions:
            require("ocr", "glimpse eval --ocr")
        configs = parse_configs(codes, shortlist, [r.strip() for r in refine.split(",") if r.strip()], fusions)
        for option, folder in (("--out", out), ("--cache", cache)):
            if folder is not None and folder.exists() and not folder.is_dir():
                raise ValueError(f"{option} {folder} is a file, not a folder: give a folder (made if missing)")
        dataset = load()
    except (DatasetError, MissingExtraError, ValueError) as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    names = [e.strip() for e in (encoder or DEFAULT_ENCODER).split(",") if e.strip()]
    options = {k: v for k, v in (model_options or {}).items() if v is not None}
    try:
        if not names:
            raise ValueError(f"--encoder {encoder!r} names no encoder: give one or more names, comma-separated")
        twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
        if twice is not None:
            raise ValueError(f"--encoder names {twice} twice: each encoder is scored once")
        if options and not set(names) & set(MODEL_ENCODERS):
            raise ValueError(f"--model, --pretrained and --device apply to the {' and '.join(MODEL_ENCODERS)} encoders")
        encoders = [create_encoder(n, **options) if n in MODEL_ENCODERS else n for n in names]
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bar.add_task(what, total=total)
            bar.update(tasks[what], completed=done, total=total)

        try:
            kinds = [a.strip() for a in adapt.split(",") if a.strip()]
            result = evaluate(dataset, encoders, configs, seed=seed, cache=cache, progress=progress, adapt=kinds,
                              backend=backend)
        except (MissingExtraError, ValueError) as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
    files = write_report(result, out or Path("glimpse-eval") / dataset.adapter)
    console.print(markdown(result), markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {files.html}\n        {files.markdown}\n        {files.json}")


@app.command(short_help="Image-caption pairs: text→image and image→text R@K, MRR.")
def captioned(
    path: Annotated[Path, typer.Argument(help="Folder with captions.tsv (or a Karpathy dataset_*.json).")],
    split: Annotated[Optional[str], typer.Option(help="Karpathy split to score (default: test); a captions.tsv has none.")] = None,
    out: Out = None, codes: Codes = "learned:256", encoder: Encoders = None, seed: Seed = 0,
    cache: Cache = None, shortlist: Shortlist = 100, backend: Backend = "local",
    adapt: Annotated[str, typer.Option(help="Also score text→image before/after `glimpse adapt` (ridge, contrastive; comma-separated), trained on half the images and scored on the other half.")] = "",
    refine: Refine = "", model: Model = None, pretrained: Pretrained = None, device: Device = None,
    ocr: Annotated[bool, typer.Option(help="Read the words in the images (OCR, the ocr extra; cached) and also score text→image fused with them.")] = False,
    fusion: Annotated[Optional[str], typer.Option(help="With --ocr: the fusions to score (calibrated, rrf; comma-separated). Default: both.")] = None,
) -> None:
    """Image-caption pairs: text→image and image→text R@1/5/10, MRR, median rank."""
    from .datasets import load_captioned

    def load():
        if fusion is not None and not ocr:
            raise ValueError("--fusion picks how the words read in the images are fused: add --ocr to read them")
        return load_captioned(path, split)

    _run(load, out, codes, encoder, seed, cache, shortlist, adapt, refine,
         {"model": model, "pretrained": pretrained, "device": device},
         ("calibrated,rrf" if fusion is None else fusion) if ocr else "", backend)


@app.command(short_help="Seeded edited copies must find their original: mAP, R@1.")
def copydetect(
    folder: Annotated[Path, typer.Argument(help="Any folder of images.")],
    per_image: Annotated[int, typer.Option(help="Edited copies (queries) per image.")] = 4,
    out: Out = None, codes: Codes = "learned:256", encoder: Encoders = None, seed: Seed = 0,
    cache: Cache = None, shortlist: Shortlist = 100, refine: Refine = "",
    model: Model = None, pretrained: Pretrained = None, device: Device = None, backend: Backend = "local",
) -> None:
    """Seeded edited copies (crop, rotation, rescale, JPEG, colour, flip, text, combos) find their original."""
    from .datasets import load_copydetect

    _run(lambda: load_copydetect(folder, per_image, seed), out, codes, encoder, seed, cache, shortlist,
         refine=refine, model_options={"model": model, "pretrained": pretrained, "device": device}, backend=backend)


@app.command(short_help="Holidays/UKBench/groups.tsv: mAP (query excluded), N-S.")
def groups(
    path: Annotated[Path, typer.Argument(help="INRIA Holidays or UKBench images, or a folder with groups.tsv.")],
    out: Out = None, codes: Codes = "learned:256", encoder: Encoders = None, seed: Seed = 0,
    cache: Cache = None, shortlist: Shortlist = 100, backend: Backend = "local",
) -> None:
    """Groups of the same scene: mAP as INRIA Holidays scores it (query excluded), UKBench N-S score."""
    from .datasets import load_groups

    _run(lambda: load_groups(path), out, codes, encoder, seed, cache, shortlist, backend=backend)


@app.command(short_help="Revisited Oxford/Paris: mAP and mP@1/5/10 for E/M/H.")
def revisitop(
    path: Annotated[Path, typer.Argument(help="Folder with gnd_roxford5k.pkl (or rparis6k) and jpg/.")],
    out: Out = None, codes: Codes = "learned:256", encoder: Encoders = None, seed: Seed = 0,
    cache: Cache = None, shortlist: Shortlist = 100, backend: Backend = "local",
) -> None:
    """Revisited Oxford/Paris: mAP and mP@1/5/10 for Easy, Medium and Hard."""
    from .datasets import load_revisitop

    _run(lambda: load_revisitop(path), out, codes, encoder, seed, cache, shortlist, backend=backend)


@app.command(short_help="Labelled classes (hashing protocol): mAP@all and mAP@k.")
def classes(
    path: Annotated[Path, typer.Argument(help="A folder per class, or a folder with labels.tsv.")],
    queries: Annotated[int, typer.Option(help="Queries to sample when labels.tsv has no split column.")] = 1000,
    map_at: Annotated[int, typer.Option(help="k of mAP@k.")] = 1000,
    out: Out = None, codes: Codes = "learned:256", encoder: Encoders = None, seed: Seed = 0,
    cache: Cache = None, shortlist: Shortlist = 100, backend: Backend = "local",
) -> None:
    """Labelled classes (hashing protocol): mAP@all and mAP@k as DeepHash-pytorch's CalcTopMap."""
    from .datasets import load_classes

    _run(lambda: load_classes(path, queries, seed, map_at), out, codes, encoder, seed, cache, shortlist, backend=backend)


@app.command(short_help="CIRR/FashionIQ: image + modification text: R@K, R_subset@K.")
def composed(
    path: Annotated[Path, typer.Argument(help="CIRR or FashionIQ folder (captions/, image_splits/, images).")],
    split: Annotated[str, typer.Option(help="Split with targets.")] = "val",
    category: Annotated[str, typer.Option(help="FashionIQ category.")] = "dress",
    alpha: Annotated[Optional[float], typer.Option(help="Text weight of the composed query. Default: the collection's.")] = None,
    out: Out = None, codes: Codes = "learned:256", encoder: Encoders = None, seed: Seed = 0,
    cache: Cache = None, shortlist: Shortlist = 100, backend: Backend = "local",
) -> None:
    """Reference image + modification text -> target: R@K and CIRR's R_subset@K."""
    from .datasets import load_composed

    def load():
        dataset = load_composed(path, split, category)
        for task in dataset.tasks:
            task.options["alpha"] = alpha
        return dataset

    _run(load, out, codes, encoder, seed, cache, shortlist, backend=backend)
