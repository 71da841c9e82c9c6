"""Time a model or a data pipeline: warm-up, repeated runs, median latency, images/s and peak memory.

    python tools/benchmark.py CONFIG [CHECKPOINT] [--mode infer|train|data|slide] [--shape H W] [--batch N]
                              [--repeat N] [--warmup N] [--amp bf16|fp16] [--threads N] [--cfg-options ...]

infer: ``model(x, None, mode='tensor')`` under ``torch.inference_mode`` (logits at the head's resolution).
train: forward with the config's loss, backward and an optimiser step (``optim_wrapper`` from the config).
slide: ``slide_inference`` on a 1x3xHxW input (default 1024x2048) with the config's ``test_cfg`` crop/stride.
data:  samples/s of ``train_dataloader`` (its pipeline and ``--workers`` loader processes).
Prints a table and one JSON line.
"""
import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import nullcontext
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from segkit import Config, DictAction  # noqa: E402

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated, or the process's peak RSS on CPU."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_runs(fn: Callable[[], None], warmup: int, repeat: int, device: torch.device) -> List[float]:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def model_case(cfg: Config, args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    from segkit.apis import init_model
    model = init_model(cfg, args.checkpoint, device=str(device))
    amp = torch.autocast(device.type, dtype=AMP_DTYPES[args.amp]) if args.amp else nullcontext()
    h, w = args.shape
    if args.mode == 'infer':
        x = torch.randn(args.batch, 3, h, w, device=device)

        def run() -> None:
            with torch.inference_mode(), amp:
                model(x, None, mode='tensor')
        return run
    if args.mode == 'slide':
        x = torch.randn(1, 3, h, w, device=device)
        metas = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))]
        if model.test_cfg.get('mode') != 'slide':
            model.test_cfg = Config(dict(mode='slide', crop_size=(1024, 1024), stride=(768, 768))).to_dict()

        def run() -> None:
            with torch.inference_mode(), amp:
                model.slide_inference(x, metas)
        return run
    # train
    from segkit.engine.optim import build_optim_wrapper
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    num_classes = model.decode_head.num_classes
    x = torch.randn(args.batch, 3, h, w, device=device)
    samples = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                    gt_sem_seg=torch.randint(0, num_classes, (h, w), device=device)) for _ in range(args.batch)]

    def run() -> None:
        with amp:
            losses = model(x, samples, mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.update_params(loss)
    return run


def data_case(cfg: Config, args: argparse.Namespace) -> Callable[[], None]:
    from segkit.datasets import build_dataloader
    loader_cfg = cfg.train_dataloader.to_dict()
    loader_cfg.update(batch_size=args.batch, num_workers=args.workers, persistent_workers=args.workers > 0)
    stream = iter(build_dataloader(loader_cfg, seed=0))
    return lambda: next(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--mode', choices=['infer', 'train', 'data', 'slide'], default='infer')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    parser.add_argument('--batch', type=int)
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES))
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s own)')
    parser.add_argument('--workers', type=int, default=1, help='loader workers for --mode data')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.shape = args.shape or ((1024, 2048) if args.mode == 'slide' else (512, 512))
    args.batch = args.batch or (2 if args.mode in ('train', 'data') else 1)
    device = torch.device(args.device)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)

    run = data_case(cfg, args) if args.mode == 'data' else model_case(cfg, args, device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = time_runs(run, args.warmup, args.repeat, device)
    median = statistics.median(times)
    result: Dict[str, object] = dict(
        config=os.path.basename(args.config), mode=args.mode, shape=list(args.shape), batch=args.batch,
        amp=args.amp, device=torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor()
        or platform.machine(), threads=torch.get_num_threads(), torch=torch.__version__,
        median_ms=round(1000 * median, 2), min_ms=round(1000 * min(times), 2),
        images_per_s=round(args.batch / median, 2), peak_memory_mb=round(peak_memory_mb(device), 1))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f'{key:<{width}}  {value}')
    print(json.dumps(result))


if __name__ == '__main__':
    main()
