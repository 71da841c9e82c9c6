"""Time a model or a data pipeline: warm-up, repeated runs, median latency, images/s and peak memory.

    python tools/benchmark.py CONFIG [CHECKPOINT] [--mode infer|train|slide|data|eval] [--shape H [W]] [--batch N]
                              [--repeat N] [--warmup N] [--amp bf16|fp16] [--threads N] [--cfg-options ...]

infer: ``model(x, None, mode='tensor')`` under ``torch.inference_mode`` (logits at the head's resolution).
train: ``model.train_step`` on a batch of random uint8 images and labels: preprocessing, forward with the config's
       losses, backward and the update of the config's ``optim_wrapper``.
slide: ``slide_inference`` of a 1x3xHxW input (default 1024x2048); the config's ``test_cfg`` if it is a slide
       one, else crop 1024 and stride 768.
data:  samples/s of ``train_dataloader`` (its pipeline, ``--workers`` loader processes).
eval:  memory of ``model.test_step`` + ``test_evaluator`` over ``--num-images`` images of ``test_dataloader``
       (cycled): the process's resident memory after 1, 10, 100, ... images and its peak.
matmul: GFLOP/s of an NxN matrix product (``--matmul-size``, float32 or the ``--amp`` dtype): the yardstick for
       a model's achieved GFLOP/s (``tools/get_flops.py`` FLOPs / latency). The config is not used.
``--amp`` goes through the configs' own opt-in keys: ``model.test_cfg.autocast_dtype`` for inference,
an ``AmpOptimWrapper`` with that dtype for training. The config's ``env_cfg.retain_freed_memory`` (default True)
is applied as ``tools/train.py`` and ``tools/test.py`` apply it (``segkit.engine.retain_freed_memory``).
Prints a table and one JSON line.
"""
import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from segkit import Config, DictAction  # noqa: E402
from segkit.engine import retain_freed_memory  # noqa: E402
from segkit.engine.cli import config_with_options, load_config  # noqa: E402

AMP_DTYPES = {'bf16': 'bfloat16', 'fp16': 'float16'}


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated, or the process's peak resident memory on CPU."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1 if sys.platform == 'darwin' else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def resident_memory_mb() -> Optional[float]:
    """The process's resident memory now (Linux), or None where /proc is missing."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20
    except OSError:
        return None


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


def apply_amp(cfg: Config, args: argparse.Namespace) -> None:
    """Turn ``--amp`` into the config keys a user would set."""
    if not args.amp:
        return
    dtype = AMP_DTYPES[args.amp]
    if args.mode == 'train':
        cfg.optim_wrapper.update(type='AmpOptimWrapper', dtype=dtype)
    else:
        cfg.model.setdefault('test_cfg', {})['autocast_dtype'] = dtype


def random_batch(batch: int, shape: tuple, num_classes: int, device: torch.device) -> dict:
    """A collated batch as the dataloader gives it: uint8 BGR images and (8-bit where they fit) label maps."""
    h, w = shape
    label_dtype = torch.uint8 if num_classes <= 256 else torch.int64
    inputs = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, device=device) for _ in range(batch)]
    samples = [dict(img_shape=(h, w), ori_shape=(h, w),
                    gt_sem_seg=torch.randint(0, num_classes, (h, w), dtype=label_dtype, device=device))
               for _ in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


def model_runner(model: torch.nn.Module, cfg: Config, args: argparse.Namespace,
                 device: torch.device) -> Callable[[], None]:
    """What one timed run of ``args.mode`` does with ``model`` (built by ``init_model``)."""
    h, w = args.shape
    if args.mode == 'infer':
        x = torch.randn(args.batch, 3, h, w, device=device)

        def run() -> None:
            with torch.inference_mode():
                model(x, None, mode='tensor')
        return run
    if args.mode == 'slide':
        x = torch.randn(1, 3, h, w, device=device)
        metas = [dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))]
        if model.test_cfg.get('mode') != 'slide':
            model.test_cfg = {**model.test_cfg, 'mode': 'slide', 'crop_size': (1024, 1024), 'stride': (768, 768)}

        def run() -> None:
            with torch.inference_mode():
                model.slide_inference(x, metas)
        return run
    from segkit.engine.optim import build_optim_wrapper
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    batch = random_batch(args.batch, (h, w), model.num_classes, device)
    return lambda: model.train_step(batch, optim_wrapper)


def matmul_runner(args: argparse.Namespace, device: torch.device) -> Callable[[], None]:
    dtype = getattr(torch, AMP_DTYPES[args.amp]) if args.amp else torch.float32
    a, b = (torch.randn(args.matmul_size, args.matmul_size, device=device, dtype=dtype) for _ in range(2))
    return lambda: a @ b


def data_case(cfg: Config, args: argparse.Namespace) -> Callable[[], None]:
    from segkit.datasets import build_dataloader
    loader_cfg = cfg.train_dataloader.to_dict()
    loader_cfg.update(batch_size=args.batch, num_workers=args.workers, persistent_workers=args.workers > 0)
    stream = iter(build_dataloader(loader_cfg, seed=0))
    return lambda: next(stream)


def eval_memory(cfg: Config, args: argparse.Namespace, device: torch.device) -> Dict[str, object]:
    """Resident memory after 1, 10, 100, ... and ``--num-images`` images of a test run, and its peak."""
    from segkit.apis import init_model
    from segkit.datasets import build_dataloader
    from segkit.engine.loops import Evaluator, dataset_meta_of
    model = init_model(cfg, args.checkpoint, device=str(device))
    loader = build_dataloader(cfg.test_dataloader.to_dict())
    evaluator = Evaluator(cfg.test_evaluator.to_dict())
    evaluator.set_dataset_meta(dataset_meta_of(loader))
    checkpoints = {n for n in (10**k for k in range(10)) if n < args.num_images} | {args.num_images}
    resident, seen = {}, 0
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    with torch.no_grad():
        for batch in batches:
            evaluator.process(batch, model.test_step(batch))
            seen += len(batch['data_samples'])
            if seen in checkpoints:
                resident[seen] = round(resident_memory_mb() or float('nan'), 1)
            if seen >= args.num_images:
                break
    evaluator.evaluate(seen)
    return dict(resident_mb_after_images=resident, peak_memory_mb=round(peak_memory_mb(device), 1))


def machine(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (from /proc/cpuinfo on Linux) and its core count."""
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            name = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{name}, {os.cpu_count()} cores'



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint', nargs='?')
    parser.add_argument('--mode', choices=['infer', 'train', 'slide', 'data', 'eval', 'matmul'], default='infer')
    parser.add_argument('--shape', type=int, nargs='+', metavar=('H', 'W'), help='input size; one value for a square')
    parser.add_argument('--batch', type=int)
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--amp', choices=sorted(AMP_DTYPES))
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's own)")
    parser.add_argument('--workers', type=int, default=1, help='loader workers for --mode data')
    parser.add_argument('--num-images', type=int, default=100, help='images for --mode eval')
    parser.add_argument('--matmul-size', type=int, default=2048, help='N of the NxN product for --mode matmul')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.shape = args.shape or ((1024, 2048) if args.mode == 'slide' else (512, 512))
    if len(args.shape) > 2:
        parser.error(f'--shape takes H W, or one value for a square; got {len(args.shape)} values')
    args.shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    args.batch = args.batch or (2 if args.mode in ('train', 'data') else 1)
    device = torch.device(args.device)
    cfg = load_config(lambda: config_with_options(args.config, args.cfg_options))
    if cfg is None:
        sys.exit(1)
    apply_amp(cfg, args)
    retained = bool(cfg.get('env_cfg', {}).get('retain_freed_memory', True)) and retain_freed_memory()

    result: Dict[str, object] = dict(config=os.path.basename(args.config), mode=args.mode, amp=args.amp,
                                     device=machine(device), threads=torch.get_num_threads(),
                                     torch=torch.__version__, retain_freed_memory=retained)
    if args.mode == 'eval':
        result.update(num_images=args.num_images, **eval_memory(cfg, args, device))
    else:
        if args.mode == 'data':
            run = data_case(cfg, args)
        elif args.mode == 'matmul':
            run = matmul_runner(args, device)
        else:
            from segkit.apis import init_model
            run = model_runner(init_model(cfg, args.checkpoint, device=str(device)), cfg, args, device)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        times = time_runs(run, args.warmup, args.repeat, device)
        median = statistics.median(times)
        timing = dict(median_ms=round(1000 * median, 2), min_ms=round(1000 * min(times), 2))
        if args.mode == 'matmul':
            result.update(shape=[args.matmul_size] * 2, **timing,
                          gflop_per_s=round(2 * args.matmul_size**3 / median / 1e9, 1))
        else:
            if args.mode != 'data':  # the data pipeline sets its own image size
                result['shape'] = list(args.shape)
            result.update(batch=args.batch, **timing,
                          images_per_s=round(args.batch / median, 2), peak_memory_mb=round(peak_memory_mb(device), 1))
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f'{key:<{width}}  {value}')
    print(json.dumps(result))


if __name__ == '__main__':
    main()
