"""Where a training run keeps its checkpoint and final state, and the checks before it starts.

A model folder ``MODEL`` is written atomically when training ends. While it trains, the
engine's checkpoints go to ``MODEL.checkpoint/`` beside it; at the end that folder moves
into the model as ``MODEL/training_state/``, so a finished run can later be extended to
more steps. The CLI (``fluorecon train``) and the napari plugin share these rules; only
the wording of their advice differs (options vs. check boxes). Torch-free.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from fluorecon.core.errors import InputFileError, OutputExistsError, message
from fluorecon.io.atomic import remove_path

#: Suffix of the checkpoint folder next to a model folder while it trains.
CHECKPOINT_SUFFIX = ".checkpoint"
#: Sub-folder of a finished model holding its final training state (for extending it).
TRAINING_STATE = "training_state"


@dataclass(frozen=True)
class OutputAdvice:
    """How to tell the user to fix each refusal of :func:`prepare_training_output`."""

    #: the resume switch, as the user knows it ("--resume", "resume")
    resume: str
    #: the model folder already exists
    exists: str
    #: resume asked for, but there is nothing to resume
    nothing_to_resume: str
    #: a stale checkpoint of an interrupted run is in the way
    stale_checkpoint: str


#: Wording for the command line.
CLI_ADVICE = OutputAdvice(
    resume="--resume",
    exists="Pass --overwrite to replace it, --resume with more --steps to extend it, or "
           "choose another --out.",
    nothing_to_resume="Drop --resume to start training, or pass the --out of the "
                      "interrupted run.",
    stale_checkpoint="Rerun with --resume (same data and options) or --overwrite.")


def checkpoint_dir_for(out: str | os.PathLike[str]) -> Path:
    """The checkpoint folder used while training the model folder ``out``."""
    p = Path(out)
    return p.with_name(p.name + CHECKPOINT_SUFFIX)


def prepare_training_output(out: str | os.PathLike[str], *, resume: bool, overwrite: bool,
                            advice: OutputAdvice = CLI_ADVICE) -> tuple[Path, bool]:
    """Check the model and checkpoint folders before training.

    Parameters
    ----------
    out : path
        The model folder to write.
    resume : bool
        Continue an interrupted run (its checkpoint in ``out.checkpoint/``) or extend a
        finished model (its ``training_state/``).
    overwrite : bool
        Replace an existing model folder or stale checkpoint.
    advice : OutputAdvice
        Wording of the fixes in the error messages.

    Returns
    -------
    checkpoint : Path
        The folder the engine checkpoints to. When extending a finished model, its
        training state is copied there first, so the model stays intact until the end.
    extending : bool
        Whether a finished model is being extended.

    Raises
    ------
    OutputExistsError
        ``out`` exists (and neither ``overwrite`` nor extending), or a checkpoint of an
        interrupted run exists and neither ``resume`` nor ``overwrite`` was asked for.
    InputFileError
        ``resume`` with nothing to resume.
    """
    out = Path(out)
    ckpt = checkpoint_dir_for(out)
    has_ckpt = (ckpt / "checkpoint.json").is_file()
    state = out / TRAINING_STATE
    # extending: a finished model with its training state (possibly interrupted before)
    extending = resume and (state / "checkpoint.json").is_file()
    if out.exists() and not overwrite and not extending:
        raise OutputExistsError(message(f"an existing path {out}", "a new model folder",
                                        advice.exists))
    if resume and not has_ckpt and not extending:
        raise InputFileError(message(f"{advice.resume} with no checkpoint in {ckpt}",
                                     "the checkpoint of an interrupted run, or a model "
                                     "folder with its training state",
                                     advice.nothing_to_resume))
    if not resume and ckpt.exists():
        if not overwrite:
            raise OutputExistsError(message(f"a checkpoint of an interrupted run in {ckpt}",
                                            f"{advice.resume} to continue it, or overwrite "
                                            "to start afresh", advice.stale_checkpoint))
        remove_path(ckpt)
    if extending and not has_ckpt:  # work on a copy: the model stays intact until the end
        shutil.copytree(state, ckpt)
    return ckpt, extending
