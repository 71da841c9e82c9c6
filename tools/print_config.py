"""Print a config after ``_base_`` inheritance and ``--cfg-options`` overrides.

    python tools/print_config.py CONFIG [--cfg-options key=value ...] [--save-path OUT.py]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segkit import DictAction  # noqa: E402
from segkit.engine.cli import config_with_options, load_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description='Print the merged config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override settings: key=value, e.g. model.decode_head.num_classes=11')
    parser.add_argument('--save-path', help='also write the merged config to this .py file')
    args = parser.parse_args()
    cfg = load_config(lambda: config_with_options(args.config, args.cfg_options))
    if cfg is None:
        return 1
    print(cfg.pretty_text, end='')
    if args.save_path:
        cfg.dump(args.save_path)
        print(f'# saved to {args.save_path}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
