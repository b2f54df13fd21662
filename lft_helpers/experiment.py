"""One runner for every experiment: a list of named specs, trained and scored on the same data.

`run`, `compare`, `sweep` and the notebook all go through `run_specs`; what differs between them
is only the list of specs (see `specs`).
"""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

from .config import Config
from .errors import LFTError
from .hub import is_local, readable_path
from .modeling import (
    build_peft_model,
    check_model,
    describe_model,
    head_modules,
    load_model,
    model_label,
)
from .pipeline import (
    PARTIAL,
    RESULTS,
    Prepared,
    changed_settings,
    check_output_dir,
    check_resume_config,
    prepare_data,
    save_run,
    score_model,
    start_over,
    train_variant,
)
from .probe import fit_probe, make_probe_model, pooling_convention
from .reporting import load_results, seed_spread, write_json_atomic
from .runtime import is_main_process
from .specs import Spec, run_slug, variant_specs


def freeze_all_but(model, module_names) -> None:
    """Train only parameters under the named modules (by name component)."""
    for name, param in model.named_parameters():
        param.requires_grad = any(m in name.split(".") for m in module_names)


def train_also(model, names) -> None:
    """Also train parameters whose name has one of `names` as a component (BitFit: "bias")."""
    for name, param in model.named_parameters():
        if any(n in name.split(".") for n in names):
            param.requires_grad = True


def prepare_model(spec: Spec, config: Config):
    """A fresh model set up to train what `spec` trains (the head is seeded and new)."""
    model = load_model(config)
    if spec.train == "embeddings":
        return make_probe_model(model, pooling_convention(config.model))
    if spec.train == "peft":
        model = build_peft_model(model, config, spec.peft)
    elif spec.train == "head":
        freeze_all_but(model, head_modules(model))
    else:  # "none" trains nothing, "full" everything
        model.requires_grad_(spec.train == "full")
    train_also(model, spec.trainable)
    return model


def save_trained(model, spec: Spec, directory: str | Path, tokenizer=None) -> float:
    """Save what must be kept to reuse the model (safetensors); return its size in MB (10^6 B).

    For the head-only probe that is the head alone; a PEFT model saves its adapter and head.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if spec.train == "head":
        heads = [*head_modules(model), *spec.trainable]  # BitFit keeps its biases too
        state = {
            k: v.detach().contiguous()
            for k, v in model.state_dict().items()
            if any(m in k.split(".") for m in heads)
        }
        save_file(state, str(directory / "head.safetensors"))
    elif spec.train == "embeddings":  # the encoder is the pretrained one: keep the probe alone
        state = {k: v.detach().contiguous() for k, v in model.classifier.state_dict().items()}
        save_file(state, str(directory / "probe.safetensors"))
    else:
        model.save_pretrained(str(directory), safe_serialization=True)
    size = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return round(size / 1e6, 3)


def peft_record(model, model_name: str) -> dict:
    """The PEFT config actually applied (targets resolved) and the adapter's own parameters.

    The base model is named by its label: PEFT records the folder it was loaded from, which
    for a local or offline model is a path on this machine.
    """
    configs = getattr(model, "peft_config", None)
    if not configs:
        return {}
    applied = {**configs["default"].to_dict(), "base_model_name_or_path": model_label(model_name)}
    record = {
        "peft_config": {k: sorted(v) if isinstance(v, set) else v for k, v in applied.items()},
        # Every method trains the head in full; the adapter is what the method itself adds.
        "adapter_params": sum(
            p.numel()
            for name, p in model.named_parameters()
            if p.requires_grad and "modules_to_save" not in name
        ),
    }
    if applied.get("peft_type") == "LORA":
        record.update(
            r=applied["r"],
            lora_alpha=applied["lora_alpha"],
            targets=sorted(applied["target_modules"]),
        )
    return record


def finish_spec(spec: Spec, model, prepared: Prepared, config: Config, fit=None) -> dict:
    """Score a (trained) model and save what must be kept; return the run's full record."""
    record = {
        "spec": spec.to_dict(),
        **peft_record(model, config.model),
        **score_model(model, prepared, config),
    }
    record.update(fit or {})
    if spec.save_dir and is_main_process():
        directory = Path(config.output_dir) / spec.save_dir
        record["saved_size_mb"] = save_trained(model, spec, directory, prepared.tokenizer)
    return record


def fit_spec(spec: Spec, prepared: Prepared, config: Config, *, log=print, resume=False):
    """Build, train, score and save one spec's model; return the model and its record.

    Checkpoints go to `<output_dir>/checkpoints/<spec>`, so --resume finds each run's own.
    """
    run_config = spec.config_for(config)
    model = prepare_model(spec, run_config)
    lr = spec.learning_rate(run_config)
    fit = None
    if spec.train == "embeddings":
        fit = fit_probe(model, prepared.train, prepared.tokenizer, run_config, **spec.probe)
    elif lr is not None:
        name = run_slug(spec.name)
        fit = train_variant(
            name, model, lr, prepared, run_config, log=log, resume=resume, **training_hooks(spec)
        )
    return model, finish_spec(spec, model, prepared, run_config, fit)


def training_hooks(spec: Spec) -> dict:
    """A spec's optimizer and callbacks as `train_model` takes them (none: nothing passed)."""
    hooks = {"optimizer": dict(spec.optimizer), "callbacks": spec.callbacks}
    return {k: v for k, v in hooks.items() if v}


def run_specs(specs, prepared: Prepared, config: Config, *, log=print, resume=False, save=None):
    """Run each spec on the same prepared data; `save(runs)` is called after each one."""
    runs: dict = {}
    for spec in specs:
        log(f"{spec.label}:")
        _, runs[spec.name] = fit_spec(spec, prepared, config, log=log, resume=resume)
        log(f"  accuracy {runs[spec.name]['accuracy']:.4f}, F1 {runs[spec.name]['f1']:.4f}")
        if save is not None:
            save(runs)
    return runs


def run_experiment(
    config: Config,
    specs=("baseline", "lora"),
    *,
    log=print,
    resume=False,
    overwrite=False,
    prepared=None,
    extra=None,
) -> dict:
    """Run `specs` (or variant names) on the same data into `config.output_dir`.

    `results.partial.json` is rewritten as each run ends and `results.json` (replacing the
    partial file) once all have, so an interrupted run never replaces a complete one. `extra`
    adds top-level entries to both.
    """
    specs = [s if isinstance(s, Spec) else variant_specs([s])[0] for s in specs]
    if is_main_process():  # other ranks could meet rank 0's fresh results.json and refuse
        check_output_dir(config.output_dir, overwrite=overwrite, resume=resume)
    if resume:
        check_resume_config(config.output_dir, config)
    if prepared is None:
        shown = readable_path(config.data) if is_local(config.data) else config.data
        log(f"Loading data from {shown} and model {describe_model(config.model)}")
        prepared = prepare_data(config, log)
    lora = [s.config_for(config) for s in specs if s.train == "peft" and s.peft_type == "LORA"]
    check_model(config, lora_configs=lora)
    # Only now, on rank 0: a run refused by any check above leaves the old one intact.
    if overwrite and not resume and is_main_process():
        start_over(config.output_dir, log)
    log(
        f"  {len(prepared.train)} train, {len(prepared.val)} validation, "
        f"{len(prepared.eval)} eval reviews; max length {config.max_length}"
    )

    def save(runs: dict, *, complete: bool = False) -> dict:
        return save_run(config, runs, prepared, complete=complete, extra=extra)

    save({})  # the record a --resume is checked against
    runs = run_specs(specs, prepared, config, log=log, resume=resume, save=save)
    return save(runs, complete=True)


# Several seeds: the same data, the same eval reviews, another training seed each time.


SEEDS = "seeds.json"


def finished_results(output_dir: str | Path) -> dict | None:
    """The complete results.json in `output_dir`, if there is one (a --resume keeps it).

    A progress file beside it means a later run (an --overwrite) was stopped there: that run
    is the one to continue, and the older results are not kept."""
    path = Path(output_dir) / RESULTS
    if not path.is_file() or (Path(output_dir) / PARTIAL).is_file():
        return None
    results = load_results(path)
    return results if results.get("complete") else None


def kept_results(config: Config, *, resume: bool) -> dict | None:
    """With --resume, the finished results in `config.output_dir`, checked to have run with
    `config`'s settings (else the resume is refused); None when there is nothing to keep."""
    kept = finished_results(config.output_dir) if resume else None
    if kept is not None:
        check_resume_config(config.output_dir, config)
    return kept


# An --overwrite over several runs' folders (seeds, scaling sizes) marks when it began, so that
# a later --resume of it keeps only what it wrote, never the older run's results it had not
# reached yet; the mark goes when the whole command completes.
OVERWRITE_MARK = "overwrite.json"


def mark_overwrite(folder: str | Path, *, overwrite: bool, resume: bool) -> float:
    """When the --overwrite that `folder` belongs to began (a file time, st_mtime; 0.0 when none
    is under way); an --overwrite without --resume begins one now."""
    mark = Path(folder) / OVERWRITE_MARK
    if overwrite and not resume and is_main_process():
        mark.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic({"began": dt.datetime.now(dt.timezone.utc).isoformat()}, mark)
    # The mark's own time, on the clock that stamps the files it is compared with (the
    # kernel's coarse clock can lag time.time() by milliseconds).
    return mark.stat().st_mtime if mark.is_file() else 0.0


def end_overwrite(folder: str | Path) -> None:
    if is_main_process():
        (Path(folder) / OVERWRITE_MARK).unlink(missing_ok=True)


def stale(folder: str | Path, since: float) -> bool:
    """Whether an --overwrite that began at `since` has written nothing in `folder` yet: what
    is there is the older run's, to be replaced rather than kept or continued."""
    written = [Path(folder) / name for name in (RESULTS, PARTIAL)]
    return bool(since) and not any(p.is_file() and p.stat().st_mtime >= since for p in written)


def seed_dir(output_dir: str | Path, seed: int) -> Path:
    """Where a further training seed's run goes: `<output_dir>/seeds/seed<k>`."""
    return Path(output_dir) / "seeds" / f"seed{seed}"


def further_seeds(config: Config) -> list[dict]:
    """The finished runs of `config`'s further training seeds, in seed order: what `--seeds`
    wrote under `<output_dir>/seeds` with `config`'s settings, on the data `config.seed` picks.
    A folder run with other settings, or not finished, is left out, so the runs it returns pair
    review by review with a run of `config` (a notebook's run loads the seeds a command made)."""
    found = []
    for folder in Path(config.output_dir, "seeds").glob("seed*"):
        results = finished_results(folder)
        if results is None:
            continue
        seed = results["config"].get("seed")
        same = not changed_settings(results["config"], config.replace(seed=seed))
        if seed != config.seed and same and results.get("data_seed") == config.seed:
            found.append(results)
    return sorted(found, key=lambda r: r["config"]["seed"])


# Seeds enough to see training noise, few enough for a CPU: the method suite's default, and
# what the notebook suggests for its comparison and sweep.
DEFAULT_SEEDS = 3


def seeds_command(config: Config, command: str, seeds: int = DEFAULT_SEEDS) -> str:
    """The command line that trains further seeds of `config`'s `compare` or `sweep`, keeping
    its finished run as the first (--resume), for a notebook to name."""
    parts = ["python", "-m", "lft_helpers", command, "--model", config.model]
    parts += ["--data", config.data] if config.data else []
    parts += ["--preset", config.preset, "--seed", str(config.seed), "--seeds", str(seeds)]
    parts += ["--resume"]
    parts += ["--output-dir", str(config.output_dir)]
    return shlex.join(parts)


SEEDS_RULE = "give a whole number, 1 or more"


def check_seeds(count) -> int:
    """`count` if it is a number of training seeds, else an LFTError naming --seeds: the one
    check for the runners and the --seeds flag alike."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise LFTError(f"--seeds {count!r}: {SEEDS_RULE}.")
    return count


def training_seeds(config: Config, count: int) -> list[int]:
    """`count` seeds from the config's own: it picks the data, and trains the first run."""
    return [config.seed + k for k in range(check_seeds(count))]


def run_seeded(
    config: Config,
    specs,
    *,
    seeds: int = 1,
    log=print,
    resume=False,
    overwrite=False,
    prepared=None,
    extra=None,
) -> list[dict]:
    """`run_experiment` with the config's seed in `config.output_dir`, then with each further
    training seed in `seed_dir(...)`, all on the data the config's seed picks (the same train,
    validation and eval reviews), so runs pair review by review across seeds.

    With `resume`, a seed whose results.json is complete is kept, not run again. Several
    seeds also write `<output_dir>/seeds.json` (`reporting.seed_spread`).
    """
    runs = []
    began = mark_overwrite(config.output_dir, overwrite=overwrite and seeds > 1, resume=resume)
    for seed in training_seeds(config, seeds):
        first = seed == config.seed
        out = Path(config.output_dir) if first else seed_dir(config.output_dir, seed)
        seeded = config.replace(seed=seed, output_dir=str(out))
        fresh = resume and stale(out, began)  # the older run's: replace it, keep nothing
        kept = None if fresh else kept_results(seeded, resume=resume)
        if kept is not None:
            which = f"Seed {seed}: finished" if seeds > 1 else "Finished"
            log(f"{which} before, kept ({out / RESULTS})")
            runs.append(kept)
            continue
        if seeds > 1:
            log(f"Seed {seed}{' (it also picked the data)' if first else ''}:")
        if prepared is None and not first:
            prepared = prepare_data(config, log)  # the config seed's data, for every seed
        info = {**(extra or {}), **({"data_seed": config.seed} if seeds > 1 else {})}
        runs.append(
            run_experiment(
                seeded,
                specs,
                log=log,
                resume=resume and not fresh,
                overwrite=overwrite or fresh,
                prepared=prepared,
                extra=info or None,
            )
        )
    if len(runs) > 1 and is_main_process():
        write_json_atomic(seed_spread(runs), Path(config.output_dir) / SEEDS)
    end_overwrite(config.output_dir)
    return runs
