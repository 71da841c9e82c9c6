"""Print a config after ``_base_`` inheritance and ``--cfg-options`` overrides.

    python tools/print_config.py CONFIG [--cfg-options key=value ...] [--save-path OUT.py]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from segkit import Config, DictAction  # noqa: E402
from segkit.config import ConfigError  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description='Print the merged config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override settings: key=value, e.g. model.decode_head.num_classes=11')
    parser.add_argument('--save-path', help='also write the merged config to this .py file')
    args = parser.parse_args()
    try:
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
    except ConfigError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(cfg.pretty_text, end='')
    if args.save_path:
        cfg.dump(args.save_path)
        print(f'# saved to {args.save_path}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
