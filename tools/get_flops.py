"""Count a model's parameters and FLOPs with ``torch.utils.flop_counter``.

    python tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options ...]

FLOPs are printed in the multiply-accumulate convention that papers use (SegFormer-B0: 8.4 GFLOPs at 512x512),
i.e. half of what ``FlopCounterMode`` counts (it counts a multiply-add as two operations); both are shown.
Counted are the matrix products that run (convolutions, linear layers, attention); element-wise ops are not.
The count is of what segkit executes: its ``SegformerHead`` fuses before upsampling (see its docstring), so
SegFormer counts are below the papers' (B0: 5.5 G instead of 8.4 G at 512x512; docs/benchmark.md).
"""
import argparse
import json
import os
import sys
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count  # noqa: E402

from segkit import DictAction  # noqa: E402
from segkit.engine.cli import config_with_options, load_config  # noqa: E402


def cpu_attention_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """FLOPs of the CPU kernel of ``F.scaled_dot_product_attention``, for which torch has no formula (it would
    count attention as free)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


CPU_ATTENTION_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_attention_flops}


def count(model: torch.nn.Module, shape: tuple) -> dict:
    """Parameters (in total and per top-level part) and multiply-accumulates of one ``1x3xHxW`` forward in
    ``'tensor'`` mode."""
    x = torch.randn(1, 3, *shape)
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with torch.inference_mode(), counter:
        model(x, None, mode='tensor')
    return dict(params=sum(p.numel() for p in model.parameters()),
                params_by_part={name: sum(p.numel() for p in part.parameters())
                                for name, part in model.named_children()},
                macs=counter.get_total_flops() // 2)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description='Parameters and FLOPs of a model')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', default=[512, 512], metavar=('H', 'W'),
                        help='input size; one value for a square (default: 512 512)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
    args = parser.parse_args(argv)
    if len(args.shape) > 2:
        parser.error(f'--shape takes H W, or one value for a square; got {len(args.shape)} values')
    args.shape = args.shape * 2 if len(args.shape) == 1 else args.shape
    cfg = load_config(lambda: config_with_options(args.config, args.cfg_options))
    if cfg is None:
        return 1
    from segkit.apis import init_model
    counts = count(init_model(cfg), tuple(args.shape))
    result = dict(config=os.path.basename(args.config), shape=list(args.shape),
                  params_m=round(counts['params'] / 1e6, 3),
                  params_m_by_part={k: round(v / 1e6, 3) for k, v in counts['params_by_part'].items()},
                  gflops_mac=round(counts['macs'] / 1e9, 2), gflops_2xmac=round(2 * counts['macs'] / 1e9, 2))
    print(f'Input shape: (3, {args.shape[0]}, {args.shape[1]})')
    print(f'Params: {result["params_m"]} M')
    print(f'FLOPs: {result["gflops_mac"]} G (multiply-accumulates; {result["gflops_2xmac"]} G counting 2 per MAC)')
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
