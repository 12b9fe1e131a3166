"""``wrn-launch export CKPT --format MINDIR|ONNX|AIR [--config FILE] [-o OUT] [--verify]``: a
checkpoint exported for inference (``wrn.export``)."""

from __future__ import annotations

import argparse

from launcher.commands.common import error, positive_int

HELP = "export a checkpoint for inference"
DESCRIPTION = ("Export a checkpoint for inference. The model comes from the run's config.yaml "
               "(found next to RUN/checkpoints/) unless --config is given. AIR needs an Ascend "
               "host.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch export``."""
    p.add_argument("ckpt", help="checkpoint file (.ckpt)")
    p.add_argument("--format", "--file_format", dest="format", default="MINDIR",
                   help="MINDIR (default), ONNX or AIR")
    p.add_argument("--config", metavar="FILE", help="training config the checkpoint was made with")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.add_argument("-o", "--output", "--file_name", dest="output", metavar="OUT",
                   help="output file or folder (default: <checkpoint name>.<format> here)")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=1,
                   help="batch dimension of the exported input (default 1)")
    p.add_argument("--verify", action="store_true", help="reload the file and compare its "
                   "predictions with the checkpoint's (ONNX: needs onnxruntime)")


def run(args: argparse.Namespace) -> int:
    """Export; exit status 0, 1 when ``--verify`` finds other predictions, 2 bad input."""
    from wrn.config import ConfigError
    from wrn.export import describe, export_checkpoint
    try:
        result = export_checkpoint(args.ckpt, args.format, config=args.config,
                                   overrides=tuple(args.overrides), output=args.output,
                                   batch_size=args.batch_size, verify=args.verify)
    except ConfigError as exc:
        return error("export", str(exc))
    print("\n".join(describe(result)))
    return 0 if result.same_classes in (None, True) else 1
