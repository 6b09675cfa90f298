"""The ``fewshot-th`` command (also ``python -m fewshot_th``).

    fewshot-th train --profile cpu --data synthheads --out runs/cpu --steps 20000
    fewshot-th train --out runs/cpu --steps 40000 --resume      # continue the same run
    fewshot-th evaluate --out results/shipped                  # FF and FT, K = 1, 8, 32
    fewshot-th reenact --source-person 3 --driver-person 7 --adapt --out a.mp4
    fewshot-th preprocess videos/ data/mine --size 256          # real videos -> training set
    torchrun --nproc_per_node 4 -m fewshot_th train --profile paper --device cuda ...

Under torchrun every process trains on its share of each global batch (``--batch-size`` per
process) with DistributedDataParallel; see ``fewshot_th.distributed``.
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import CONTENT_TERMS, PROFILES, profile, training, with_assignments


def _train(args: argparse.Namespace) -> int:
    from .distributed import join_process_group

    device = join_process_group(args.device)
    distributed = device is not None
    args.device = device or args.device
    try:
        return _train_here(args)
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train_here(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from .data import SynthHeads, VideoFolder
    from .losses import FeatureWeightsMissing, content_loss_from
    from .meta import TalkingHeadModel, TrainingDiverged
    from .trainer import Trainer

    def fail(message: str) -> int:
        print(f"fewshot-th train: {message}", file=sys.stderr)
        return 2

    try:
        config = with_assignments(profile(args.profile), args.model)
        train = with_assignments(training(args.profile), args.set)
        if args.content:
            train = train.with_changes(content=content_terms(args.content, train.content))
        if args.batch_size is not None:
            train = train.with_changes(batch_size=args.batch_size)
    except ValueError as error:
        return fail(str(error))
    if args.data == "synthheads":
        videos = SynthHeads("train", num_identities=args.identities,
                            num_videos_per_identity=args.videos_per_identity,
                            frames_per_video=args.frames, size=config.image_size, seed=args.seed)
    else:  # a folder of fewshot-th preprocess: its training part
        try:
            videos = VideoFolder(args.data, split="train", min_frames=train.k + 1)
        except (FileNotFoundError, ValueError) as error:
            return fail(str(error))
        if videos.size != config.image_size:
            return fail(f"{args.data} holds {videos.size} px crops and the {args.profile} "
                        f"profile draws {config.image_size} px: preprocess with --size "
                        f"{config.image_size}")
    processes = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if train.batch_size * processes > len(videos):
        return fail(f"a batch of {train.batch_size} videos per process ({processes} "
                    f"process(es)) needs at least that many training videos; there are "
                    f"{len(videos)} (--identities x --videos-per-identity)")
    try:
        content = content_loss_from(train.content, vgg19_path=args.vgg19,
                                    vggface_path=args.vggface, synthface_path=args.synthface,
                                    synthlandmarks_path=args.synthlandmarks)
    except FeatureWeightsMissing as error:
        return fail(str(error))
    torch.manual_seed(args.seed)  # the same --seed starts from the same weights
    model = TalkingHeadModel.build(config, num_videos=len(videos))
    try:
        trainer = Trainer(model, videos, train, content, args.out, seed=args.seed,
                          checkpoint_every=args.checkpoint_every, sample_every=args.sample_every,
                          device=args.device, num_workers=args.workers,
                          mixed_precision=not args.fp32, overwrite=args.overwrite)
    except ValueError as error:
        return fail(str(error))
    if args.resume:
        try:
            step = trainer.load()
        except (FileNotFoundError, ValueError) as error:
            return fail(f"cannot resume: {error}")
        print(f"resumed {args.out} at step {step}")
    elif args.branch_from:
        try:
            step = trainer.branch(args.branch_from)
        except (FileNotFoundError, ValueError) as error:
            return fail(f"cannot branch {args.branch_from}: {error}")
        print(f"branched {args.branch_from} into {args.out} at step {step}")
    elif args.start_from:
        from .pretrained import load_pretrained, load_trained

        try:
            trained = (load_trained(args.start_from) if args.start_from.endswith(".json")
                       else load_pretrained(args.start_from))
            trainer.start_from(trained, args.start_from)
        except (FileNotFoundError, ValueError) as error:
            print(f"fewshot-th train: cannot start from {args.start_from}: {error}",
                  file=sys.stderr)
            return 2
    try:
        limit = args.minutes * 60 if args.minutes else None
        if args.eval_every:  # time to quality: FF scores on held-out people in OUT/quality.jsonl
            from .evaluation import train_and_score

            train_and_score(trainer, args.steps, args.eval_every, args.test_identities, limit)
        else:
            trainer.run(args.steps, max_seconds=limit)
        path = trainer.save()
    except TrainingDiverged as error:
        print(f"fewshot-th train: {error}", file=sys.stderr)
        return 3
    except ValueError as error:  # e.g. another run in --out
        return fail(str(error))
    except OSError as error:  # a full disk, a directory that became read-only
        print(f"fewshot-th train: could not write to {args.out} ({error}); the last complete "
              f"checkpoint is {trainer.last_checkpoint or 'none'}", file=sys.stderr)
        return 4
    if path is not None:  # process 0 of a distributed run, or a single process
        print(f"step {trainer.step}: checkpoint {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    from .evaluation import evaluate_few_shot
    from .finetune import fine_tuning_recipe
    from .pretrained import load_pretrained, load_trained
    from .report import write_report

    try:
        model = load_trained(args.checkpoint) if args.checkpoint else \
            load_pretrained(args.pretrained)
    except (ValueError, FileNotFoundError) as error:
        print(f"fewshot-th evaluate: {error}", file=sys.stderr)
        return 2
    model.to(args.device)
    try:
        ft_train = with_assignments(fine_tuning_recipe(model), args.ft_set) if args.ft_set \
            else None
    except ValueError as error:
        print(f"fewshot-th evaluate: --ft-set: {error}", file=sys.stderr)
        return 2
    fid_network, fid_note = None, ""
    if args.fid:
        from .fid import FIDWeightsMissing, load_fid_inception

        try:
            fid_network = load_fid_inception(args.fid_weights)
        except FIDWeightsMissing as error:
            fid_note = f"FID left out: {error}"
            print(f"fewshot-th evaluate: {fid_note}", file=sys.stderr)
    if args.data:  # the held-out videos of a fewshot-th preprocess folder
        from .data import VideoFolder
        from .folder_evaluation import evaluate_video_folder

        try:
            videos = VideoFolder(args.data, "test", min_frames=2 * max(args.k))
            results = evaluate_video_folder(model, videos, tuple(args.k), tuple(args.modes),
                                            args.ft_steps, fid_network=fid_network,
                                            progress=True, ft_train=ft_train)
        except (FileNotFoundError, ValueError) as error:
            print(f"fewshot-th evaluate: {error}", file=sys.stderr)
            return 2
        people = f"{len(videos)} held-out videos of {args.data}"
    else:
        results = evaluate_few_shot(model, args.identities, seed=args.seed,
                                    k_values=tuple(args.k), modes=tuple(args.modes),
                                    ft_steps=args.ft_steps, progress=True,
                                    fid_network=fid_network, targets=tuple(args.targets),
                                    ft_train=ft_train)
        people = f"{args.identities} SynthHeads test identities"
    out = Path(args.out)
    print(write_report(out, results, args.checkpoint or f"shipped model {args.pretrained}",
                       people, real_videos=bool(args.data), fid_note=fid_note,
                       identities=None if args.data else args.identities, seed=args.seed,
                       ft_steps=args.ft_steps, ft_set=args.ft_set))
    print(f"written: {out / 'table.md'}, {out / 'scores.json'}, {out / 'scores.png'}, "
          f"{out / 'gains.png'}")
    return 0


def _reenact(args: argparse.Namespace) -> int:
    import torch

    from .finetune import few_shot
    from .landmarks import draw_landmarks
    from .pretrained import load_pretrained, load_trained
    from .reenact import adapt_landmarks, driver_from, sources_from, write_video

    try:
        model = load_trained(args.checkpoint) if args.checkpoint else \
            load_pretrained(args.pretrained, device=args.device)
        model.to(args.device)
        size = model.config.image_size
        sources, source_points = sources_from(
            size, args.k, person=args.source_person, images=args.source_images,
            video=args.source_video, detector=args.detector)
        driver_frames, driver_points = driver_from(
            size, args.frames, person=args.driver_person, video=args.driver_video,
            source_person=args.source_person, detector=args.detector)
    except (ValueError, FileNotFoundError) as error:
        print(f"fewshot-th reenact: {error}", file=sys.stderr)
        return 2
    personal = few_shot(model, sources, source_points, mode=args.mode,
                        steps=args.ft_steps if args.mode == "ft" else None, progress=True)
    driving = adapt_landmarks(driver_points, driver_points, source_points, method=args.adapt) \
        if args.adapt else driver_points
    generated = personal.render(driving)
    if args.side_by_side:
        generated = torch.cat([driver_frames, draw_landmarks(driving, size), generated], dim=3)
    path = write_video(args.out, generated, fps=args.fps)
    print(f"written: {path} ({len(generated)} frames, K = {len(sources)}, {args.mode.upper()}, "
          f"{f'{args.adapt}-adapted' if args.adapt else 'raw'} landmarks"
          f"{'; driver | landmarks | generated' if args.side_by_side else ''})")
    return 0


def content_terms(items: list[str], profile_terms) -> tuple[tuple[str, float], ...]:
    """``--content`` as ``TrainConfig.content``: ``NAME`` or ``NAME=WEIGHT`` items."""
    defaults, terms = dict(profile_terms), []
    for item in items:
        name, _, weight = item.partition("=")
        if name not in CONTENT_TERMS:
            raise ValueError(f"--content: unknown term {name!r}; use {', '.join(CONTENT_TERMS)}")
        try:
            value = float(weight) if weight else defaults.get(name, 10.0 if name == "pixel"
                                                              else 1.0)
        except ValueError:
            raise ValueError(f"--content: {item!r} needs a number after '='") from None
        if not value > 0 or value == float("inf"):
            raise ValueError(f"--content: the weight of {name} must be positive, got {value}")
        terms.append((name, value))
    return tuple(terms)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fewshot-th", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="meta-learn E, G and D")
    train.add_argument("--profile", choices=PROFILES, default="cpu")
    train.add_argument("--data", default="synthheads",
                       help="training videos: synthheads, or a folder of fewshot-th preprocess "
                            "(its training part)")
    train.add_argument("--out", required=True, help="run directory (checkpoints, logs)")
    train.add_argument("--steps", type=int, required=True, help="train until this step")
    train.add_argument("--minutes", type=float, default=None,
                       help="stop after this many minutes of training (and save), even before "
                            "--steps")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="a fresh run may delete another run's checkpoints and log in --out")
    train.add_argument("--start-from", metavar="MODEL",
                       help="a warm start: E and G from this shipped model (or checkpoint .json), "
                            "D afresh")
    train.add_argument("--branch-from", metavar="CHECKPOINT",
                       help="continue another run's checkpoint (.json) in --out with E weighting "
                            "its positions (--model embedder_pooling=weighted) where that run's "
                            "E summed them: G, D and both optimisers carry over")
    train.add_argument("--identities", type=int, default=1000)
    train.add_argument("--videos-per-identity", type=int, default=2)
    train.add_argument("--frames", type=int, default=32, help="frames per video")
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--content", nargs="+", metavar="TERM[=WEIGHT]",
                       help=f"content-loss terms among {', '.join(CONTENT_TERMS)}, each with "
                       "its weight (default: the profile's terms; a term named without a "
                       "weight keeps the profile's, else 1, the pixel term 10)")
    train.add_argument("--vgg19", help="torchvision's vgg19 weights file, or a conversion of "
                       "the Caffe model the paper used (keys conv1_1.weight ...)")
    train.add_argument("--vggface", help="path of a converted VGG-Face state dict")
    train.add_argument("--synthface", help="the .safetensors file of another SynthHeads "
                       "face-recognition network for the synthface term (default: the shipped "
                       "synthheads-face-loss)")
    train.add_argument("--synthlandmarks", help="the .safetensors file of another SynthHeads "
                       "landmark network for the synthlandmarks term (default: the shipped "
                       "synthheads-landmarks)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--sample-every", type=int, default=250)
    train.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--device", default="cpu")
    train.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="change a TrainConfig field of the profile, e.g. lr_eg=1e-4 "
                            "(repeatable)")
    train.add_argument("--model", action="append", default=[], metavar="NAME=VALUE",
                       help="change a ModelConfig field of the profile, e.g. zero_bias_init=True "
                            "(repeatable)")
    train.add_argument("--eval-every", type=float, metavar="MINUTES",
                       help="score the feed-forward model on --test-identities held-out people "
                            "every MINUTES of training, into OUT/quality.jsonl")
    train.add_argument("--test-identities", type=int, default=20)
    train.add_argument("--fp32", action="store_true",
                       help="float32 throughout (default: bfloat16 autocast where the device "
                            "has native bfloat16)")
    evaluate = commands.add_parser(
        "evaluate", help="few-shot scores on SynthHeads test identities, like Table 1")
    evaluate.add_argument("--pretrained", default="synthheads-cpu", help="a shipped model")
    evaluate.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    evaluate.add_argument("--data", help="a fewshot-th preprocess folder: score its held-out "
                          "videos instead of SynthHeads people (CSIM with dlib)")
    evaluate.add_argument("--out", required=True, help="folder for table.md, scores.json/.png")
    evaluate.add_argument("--identities", type=int, default=20)
    evaluate.add_argument("--k", type=int, nargs="+", default=[1, 8, 32])
    evaluate.add_argument("--modes", nargs="+", choices=["ff", "ft"], default=["ff", "ft"])
    evaluate.add_argument("--targets", nargs="+", choices=["same-video", "pose-distant"],
                          default=["same-video", "pose-distant"],
                          help="kinds of target frames (default: both)")
    evaluate.add_argument("--ft-steps", type=int, default=None,
                          help="fine-tuning steps (default: 40 passes over the K frames)")
    evaluate.add_argument("--ft-set", action="append", default=[], metavar="NAME=VALUE",
                          help="change a field of the fine-tuning recipe (default: the one the "
                               "model was meta-learned with and the changes it stores for "
                               "fine-tuning), e.g. lr_eg=5e-5 (repeatable)")
    evaluate.add_argument("--no-fid", dest="fid", action="store_false",
                          help="skip FID (it needs the FID Inception weights)")
    evaluate.add_argument("--fid-weights", help="path of pt_inception-2015-12-05-6726825d.pth")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--device", default="cpu")
    reenact = commands.add_parser(
        "reenact", help="drive a person (K frames) with another's motion; writes an mp4")
    reenact.add_argument("--out", required=True, help="the video to write (.mp4)")
    reenact.add_argument("--pretrained", default="synthheads-cpu", help="a shipped model")
    reenact.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    source = reenact.add_mutually_exclusive_group(required=True)
    source.add_argument("--source-person", type=int, help="a SynthHeads test person")
    source.add_argument("--source-images", help="a folder of photos of one person")
    source.add_argument("--source-video", help="a video of one person")
    driver = reenact.add_mutually_exclusive_group(required=True)
    driver.add_argument("--driver-person", type=int, help="a SynthHeads test person")
    driver.add_argument("--driver-video", help="a video whose motion drives the person")
    reenact.add_argument("--k", type=int, default=8, help="source frames (default 8)")
    reenact.add_argument("--frames", type=int, default=64, help="driving frames (default 64)")
    reenact.add_argument("--mode", choices=["ff", "ft"], default="ff")
    reenact.add_argument("--ft-steps", type=int, default=None)
    reenact.add_argument("--adapt", nargs="?", const="learned", default=None,
                         choices=["learned", "procrustes"],
                         help="move the driver's landmarks onto the source's face shape: with "
                              "the landmark model learned on SynthHeads (the default) or by "
                              "Procrustes alignment alone (any faces)")
    reenact.add_argument("--side-by-side", action="store_true",
                         help="driver | driving landmarks | generated in one video")
    reenact.add_argument("--fps", type=int, default=12)
    reenact.add_argument("--detector", choices=["dlib", "face_alignment"], default="dlib",
                         help="landmarks of real images (dlib works offline)")
    reenact.add_argument("--device", default="cpu")
    from . import preprocess

    preprocess.add_arguments(commands.add_parser(
        "preprocess", help="videos of talking heads -> a training set (crops and landmarks)"))
    args = parser.parse_args(argv)
    if args.command == "preprocess":
        return preprocess.run(args)
    if args.command == "reenact":
        for flag, low, high in (("k", 1, 32), ("frames", 1, 10_000), ("fps", 1, 120)):
            if not low <= getattr(args, flag) <= high:
                parser.error(f"--{flag} must be between {low} and {high}, got "
                             f"{getattr(args, flag)}")
        for flag in ("source_person", "driver_person"):
            value = getattr(args, flag)
            if value is not None and not 0 <= value < 1000:
                parser.error(f"--{flag.replace('_', '-')} must be between 0 and 999, got {value}")
        if args.ft_steps is not None and args.ft_steps < 0:
            parser.error("--ft-steps must be >= 0")
        if not args.out.lower().endswith(".mp4"):
            parser.error(f"--out must name an .mp4 file, got {args.out}")
        problem = _device_problem(args.device)
        if problem:
            parser.error(problem)
        return _reenact(args)
    if args.command == "evaluate":
        if args.identities < 2:
            parser.error("--identities must be at least 2 (colours are swapped between people)")
        if any(not 1 <= k <= 32 for k in args.k):
            parser.error("--k values must be between 1 and 32")
        if args.ft_steps is not None and args.ft_steps < 0:
            parser.error("--ft-steps must be >= 0")
        if args.seed < 0:
            parser.error(f"--seed must be at least 0, got {args.seed}")
        if args.ft_set and "ft" not in args.modes:
            parser.error("--ft-set changes the fine-tuning recipe: add ft to --modes")
        problem = _device_problem(args.device)
        if problem:
            parser.error(problem)
        if os.path.exists(args.out) and not os.path.isdir(args.out):
            parser.error(f"--out {args.out} is a file; give a directory for the results")
        return _evaluate(args)
    _check_train_arguments(parser, args)
    return _train(args)


def _check_train_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One clear error (exit status 2) for each bad flag, before anything is built."""
    for flag, low in (("steps", 1), ("identities", 1), ("videos_per_identity", 1),
                      ("frames", 2), ("seed", 0), ("checkpoint_every", 0),
                      ("sample_every", 0), ("workers", 0)):
        if getattr(args, flag) < low:
            parser.error(f"--{flag.replace('_', '-')} must be at least {low}, got "
                         f"{getattr(args, flag)}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.minutes is not None and not 0 < args.minutes < float("inf"):
        parser.error("--minutes must be positive")
    if args.eval_every is not None and (not 0 < args.eval_every < float("inf")
                                        or args.test_identities < 2
                                        or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        parser.error("--eval-every takes positive minutes, --test-identities at least 2, and "
                     "a single process (score a torchrun run's checkpoints with evaluate)")
    if args.eval_every is not None and args.data != "synthheads":
        parser.error("--eval-every scores held-out SynthHeads people; for --data FOLDER score "
                     "the run's checkpoints with: fewshot-th evaluate --checkpoint "
                     "OUT/step-N.json --data FOLDER")
    if args.resume and (args.start_from or args.overwrite or args.branch_from):
        parser.error("--resume continues a run: it takes neither --start-from, --branch-from "
                     "nor --overwrite")
    if args.start_from and args.branch_from:
        parser.error("--start-from copies E and G and starts D afresh, --branch-from continues "
                     "a whole run: give one of them")
    problem = _device_problem(args.device)
    if problem:
        parser.error(problem)
    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"--out {args.out} is a file; give a directory for the run")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write-test-{os.getpid()}")  # one per torchrun process
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as error:
        parser.error(f"cannot write to --out {args.out}: {error.strerror or error}")


def _device_problem(text: str) -> str | None:
    """Why ``--device text`` cannot be used here, or None."""
    from .config import as_device

    try:
        as_device(text, "--device")
    except ValueError as problem:
        return str(problem)
    return None


if __name__ == "__main__":
    sys.exit(main())
