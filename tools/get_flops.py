"""Count a model's parameters and FLOPs with ``torch.utils.flop_counter``.

    python tools/get_flops.py CONFIG [--shape H W] [--cfg-options ...]

FLOPs are printed in the multiply-accumulate convention that papers use (SegFormer-B0: 8.4 GFLOPs at 512x512),
i.e. half of what ``FlopCounterMode`` counts (it counts a multiply-add as two operations); both are shown.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from segkit import Config, DictAction  # noqa: E402


def count(model: torch.nn.Module, shape: tuple) -> dict:
    x = torch.randn(1, 3, *shape)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x, None, mode='tensor')
    flops = counter.get_total_flops()
    return dict(params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                gflops_mac=round(flops / 2e9, 2), gflops_2xmac=round(flops / 1e9, 2),
                by_module={name: round(v / 2e9, 3) for name, v in
                           ((k, sum(c.values())) for k, c in counter.get_flop_counts().items())
                           if name.count('.') <= 1 and v})


def main() -> None:
    parser = argparse.ArgumentParser(description='Parameters and FLOPs of a model')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs=2, default=(512, 512), metavar=('H', 'W'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    from segkit.apis import init_model
    result = count(init_model(cfg), tuple(args.shape))
    print(f'Input shape: (3, {args.shape[0]}, {args.shape[1]})')
    print(f'Params: {result["params_m"]} M')
    print(f'FLOPs: {result["gflops_mac"]} G (multiply-accumulates; {result["gflops_2xmac"]} G counting 2 per MAC)')
    print(json.dumps(result))


if __name__ == '__main__':
    main()
