"""Config files: inheritance, _delete_, duplicate keys, base references, overrides, dump and errors."""
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from segkit import Config, DictAction
from segkit.config import ConfigError, parse_cfg_options

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tree(tmp_path):
    """Three levels: configs/exp/child.py -> ../_base_/models/model.py, ../_base_/data.py; model.py -> base_norm.py."""
    write(tmp_path / 'configs/_base_/models/base_norm.py', """
        norm_cfg = dict(type='SyncBN', requires_grad=True)
        model = dict(type='EncoderDecoder', backbone=dict(type='MixVisionTransformer', embed_dims=32, depths=[2, 2]),
                     decode_head=dict(type='SegformerHead', num_classes=150, norm_cfg=norm_cfg))
    """)
    write(tmp_path / 'configs/_base_/models/model.py', """
        _base_ = './base_norm.py'
        model = dict(decode_head=dict(channels=256), test_cfg=dict(mode='whole'))
    """)
    write(tmp_path / 'configs/_base_/data.py', """
        crop_size = (512, 512)
        train_pipeline = [dict(type='LoadImageFromFile'), dict(type='RandomCrop', crop_size=crop_size)]
        train_dataloader = dict(batch_size=2, dataset=dict(type='ADE20KDataset', pipeline=train_pipeline))
    """)
    child = write(tmp_path / 'configs/exp/child.py', """
        _base_ = ['../_base_/models/model.py', '../_base_/data.py']
        model = dict(backbone=dict(depths=[3, 4]), decode_head=dict(num_classes=11))
        train_dataloader = dict(dataset=dict(pipeline=train_pipeline[:1]))
    """)
    return tmp_path, child


def test_three_level_inheritance_merges_dicts_and_replaces_lists(tree):
    _, child = tree
    cfg = Config.fromfile(str(child))
    assert cfg.model.type == 'EncoderDecoder'                       # from the grandparent
    assert cfg.model.decode_head.channels == 256                     # from the parent
    assert cfg.model.decode_head.num_classes == 11                   # child overrides
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.model.backbone.depths == [3, 4]                       # lists are replaced, not merged
    assert cfg.model.backbone.embed_dims == 32
    assert cfg['crop_size'] == (512, 512)
    # a base variable read by name in the child
    assert cfg.train_dataloader.dataset.pipeline == [dict(type='LoadImageFromFile')]
    assert cfg.train_dataloader.batch_size == 2


def test_delete_replaces_inherited_dict(tmp_path):
    write(tmp_path / 'base.py', "optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01, momentum=0.9))\n")
    child = write(tmp_path / 'child.py', """
        _base_ = './base.py'
        optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=6e-5))
    """)
    cfg = Config.fromfile(str(child))
    assert cfg.optim_wrapper.optimizer.to_dict() == dict(type='AdamW', lr=6e-5)
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert '_delete_' not in cfg.pretty_text


def test_same_key_in_two_bases_is_an_error_naming_both(tmp_path):
    a = write(tmp_path / 'a.py', 'crop_size = (1, 1)\n')
    b = write(tmp_path / 'b.py', 'crop_size = (2, 2)\n')
    child = write(tmp_path / 'child.py', "_base_ = ['./a.py', './b.py']\n")
    with pytest.raises(ConfigError) as e:
        Config.fromfile(str(child))
    assert "'crop_size'" in str(e.value) and str(a) in str(e.value) and str(b) in str(e.value)


def test_base_references_in_braces_and_predefined_names(tmp_path):
    write(tmp_path / 'base.py', "crop_size = (512, 1024)\nmodel = dict(test_cfg=dict(stride=(341, 341)))\n")
    child = write(tmp_path / 'child.py', """
        _base_ = './base.py'
        data_preprocessor = dict(size={{_base_.crop_size}})
        stride = {{_base_.model.test_cfg.stride}}
        work_dir = './work_dirs/{{fileBasenameNoExtension}}'
    """)
    cfg = Config.fromfile(str(child))
    assert cfg.data_preprocessor.size == (512, 1024)
    assert cfg.stride == (341, 341)
    assert cfg.work_dir == './work_dirs/child'


def test_reference_to_undefined_base_key_is_an_error(tmp_path):
    write(tmp_path / 'base.py', 'a = 1\n')
    child = write(tmp_path / 'child.py', "_base_ = './base.py'\nb = {{_base_.nope}}\n")
    with pytest.raises(ConfigError, match='nope'):
        Config.fromfile(str(child))


def test_missing_base_names_including_file_and_tried_path(tmp_path):
    child = write(tmp_path / 'cfgs/child.py', "_base_ = '../_base_/missing.py'\n")
    with pytest.raises(ConfigError) as e:
        Config.fromfile(str(child))
    msg = str(e.value)
    assert str(child) in msg and str(tmp_path / '_base_/missing.py') in msg


def test_package_scoped_bases_name_segkits_configs_from_anywhere(tmp_path, monkeypatch):
    """MMEngine's ``mmseg::`` bases let a user's package inherit the shipped configs without absolute paths."""
    monkeypatch.chdir(tmp_path)
    child = write(tmp_path / 'my_pkg/configs/child.py', """
        _base_ = ['mmseg::_base_/models/segformer_mit-b0.py', 'segkit::_base_/datasets/shapes_demo.py']
        model = dict(decode_head=dict(num_classes=5))
        """)
    cfg = Config.fromfile(str(child))
    base = Config.fromfile(str(REPO / 'configs/_base_/models/segformer_mit-b0.py'))
    assert cfg.model.backbone == base.model.backbone and cfg.model.decode_head.num_classes == 5
    assert cfg.train_dataloader.dataset.type == 'ShapesDemoDataset'
    by_scope = Config.fromfile('mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py')
    assert by_scope.filename == str(REPO / 'configs/segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py')
    other = write(tmp_path / 'other.py', "_base_ = 'mmdet::_base_/models/x.py'\n")
    with pytest.raises(ConfigError, match=r"_base_ 'mmdet::_base_/models/x.py' names the package 'mmdet'"):
        Config.fromfile(str(other))


def test_wheel_ships_the_configs_for_package_scoped_bases(tmp_path):
    """A wheel install has no repository beside it: ``mmseg::`` bases resolve to the configs packaged inside it."""
    pytest.importorskip('setuptools', minversion='70.1', reason='building a wheel needs setuptools >= 70.1')
    src = tmp_path / 'src'  # build from a copy: pip builds in the source tree and would leave build/ in the repo
    for name in ('setup.py', 'requirements.txt', 'README.md'):
        write(src / name, (REPO / name).read_text())
    for name in ('segkit', 'configs'):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns('__pycache__'))
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '-q']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'dist'), str(src)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / 'dist').glob('segkit-*.whl'))
    subprocess.run(pip + ['install', '--no-deps', '--target', str(tmp_path / 'site'), str(wheel)],
                   check=True, capture_output=True)
    write(tmp_path / 'user/my.py', "_base_ = 'mmseg::segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py'\n")
    code = ('import segkit; from segkit import Config; cfg = Config.fromfile("my.py"); '
            'print(segkit.__file__); print(cfg.model.backbone.type)')
    run = subprocess.run([sys.executable, '-c', code], cwd=tmp_path / 'user', capture_output=True, text=True,
                         env={**os.environ, 'PYTHONPATH': str(tmp_path / 'site')})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [str(tmp_path / 'site/segkit/__init__.py'), 'MixVisionTransformer']


def test_syntax_error_names_file_and_line(tmp_path):
    bad = write(tmp_path / 'bad.py', "a = 1\nb = dict(x=1,\nc = 3\n")
    with pytest.raises(ConfigError) as e:
        Config.fromfile(str(bad))
    assert str(bad) in str(e.value) and 'line' in str(e.value)


def test_runtime_error_in_config_names_file_and_line(tmp_path):
    bad = write(tmp_path / 'bad.py', "a = 1\nb = undefined_name + 1\n")
    with pytest.raises(ConfigError, match=r'bad\.py, line 2: NameError'):
        Config.fromfile(str(bad))


def test_missing_file_and_circular_bases(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        Config.fromfile(str(tmp_path / 'nope.py'))
    write(tmp_path / 'a.py', "_base_ = './b.py'\n")
    write(tmp_path / 'b.py', "_base_ = './a.py'\n")
    with pytest.raises(ConfigError, match='circular'):
        Config.fromfile(str(tmp_path / 'a.py'))


def test_attribute_access_errors_suggest_keys(tree):
    cfg = Config.fromfile(str(tree[1]))
    with pytest.raises(AttributeError, match="did you mean 'decode_head'"):
        cfg.model.decod_head


@pytest.mark.parametrize('pairs, expected', [
    (['a.b=1'], {'a.b': 1}),
    (['k=1,2,3'], {'k': [1, 2, 3]}),
    (['k=[a,b]'], {'k': ['a', 'b']}),
    (['k="[a,b]"'], {'k': ['a', 'b']}),
    (['k=(1,2)'], {'k': (1, 2)}),
    (['k="(1,2)"'], {'k': (1, 2)}),
    (['k=[(a,b),(c,d)]'], {'k': [('a', 'b'), ('c', 'd')]}),
    (['k="[(1,2),(3,4.5)]"'], {'k': [(1, 2), (3, 4.5)]}),
    (['i=3', 'f=0.5', 'e=1e-4', 't=true', 'F=False', 'n=None', 's=abc'],
     {'i': 3, 'f': 0.5, 'e': 1e-4, 't': True, 'F': False, 'n': None, 's': 'abc'}),
    (['s="quoted, text"'], {'s': 'quoted, text'}),
])
def test_cfg_options_parsing(pairs, expected):
    parsed = parse_cfg_options(pairs)
    assert parsed == expected
    assert all(type(parsed[k]) is type(v) for k, v in expected.items())


def test_cfg_options_are_never_evaluated():
    parsed = parse_cfg_options(['k=__import__("os").system("false")', 'j=1+1'])
    assert parsed == {'k': '__import__("os").system("false")', 'j': '1+1'}


def test_dict_action_through_argparse():
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(['--cfg-options', 'model.decode_head.num_classes=11', 'pipeline.1.type=X'])
    assert args.cfg_options == {'model.decode_head.num_classes': 11, 'pipeline.1.type': 'X'}


def test_merge_from_dict_dotted_keys_and_list_index(tree):
    cfg = Config.fromfile(str(tree[1]))
    cfg.merge_from_dict({'model.decode_head.num_classes': 19, 'train_pipeline.1.type': 'RandomResize',
                         'model.backbone': dict(embed_dims=64), 'new_top_level': 1})
    assert cfg.model.decode_head.num_classes == 19
    assert cfg.train_pipeline[1].type == 'RandomResize' and cfg.train_pipeline[1].crop_size == (512, 512)
    assert cfg.model.backbone.embed_dims == 64 and cfg.model.backbone.depths == [3, 4]   # dict values merge
    assert cfg.new_top_level == 1


def test_merge_from_dict_rejects_paths_that_do_not_exist(tree):
    cfg = Config.fromfile(str(tree[1]))
    with pytest.raises(ConfigError, match="model has no key 'decod_head'; did you mean 'decode_head'"):
        cfg.merge_from_dict({'model.decod_head.num_classes': 3})
    with pytest.raises(ConfigError, match='out of range'):
        cfg.merge_from_dict({'train_pipeline.5.type': 'X'})
    with pytest.raises(ConfigError, match='is a list'):
        cfg.merge_from_dict({'train_pipeline.type': 'X'})
    with pytest.warns(UserWarning, match="did you mean 'num_classes'"):
        cfg.merge_from_dict({'model.decode_head.num_clases': 3})
    with pytest.warns(UserWarning, match="<top level> has no key 'randomness'; creating it"):
        cfg.merge_from_dict({'randomness.seed': 3})
    assert cfg.randomness.seed == 3
    # a new argument that resembles an existing key is expected when the same overrides change the type
    cfg.merge_from_dict({'optim_wrapper': dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))})
    with pytest.warns(UserWarning, match="adds a new key 'dtype' to optim_wrapper; did you mean 'type'"):
        cfg.merge_from_dict({'optim_wrapper.dtype': 'bfloat16'})
    del cfg.optim_wrapper['dtype']
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cfg.merge_from_dict({'optim_wrapper.dtype': 'bfloat16', 'optim_wrapper.type': 'AmpOptimWrapper'})
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper' and cfg.optim_wrapper.dtype == 'bfloat16'


def test_overriding_a_variable_the_file_copied_names_the_copies(tree):
    cfg = Config.fromfile(str(tree[1]))
    with pytest.warns(UserWarning, match=r"changes 'norm_cfg' but not the copies of it .*: model\.decode_head\."
                                         r"norm_cfg; to change those too, override model\.decode_head\.norm_cfg\.type"):
        cfg.merge_from_dict({'norm_cfg.type': 'BN'})
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'  # as in MMEngine: the copy is not changed
    with pytest.warns(UserWarning, match=r"was read: train_pipeline\.1\.crop_size;"):
        cfg.merge_from_dict({'crop_size': (256, 256)})
    with warnings.catch_warnings():  # sections and variables that nothing copied: no warning
        warnings.simplefilter('error')
        cfg.merge_from_dict({'model.decode_head.num_classes': 3, 'train_pipeline.0.type': 'LoadImageFromFile'})


def test_dump_round_trip(tree, tmp_path):
    cfg = Config.fromfile(str(tree[1]))
    cfg.merge_from_dict({'odd_keys': {'a-b': 1, 2: (1,), 'class': None}, 'floats': [1e-6, 0.1, float('inf')]})
    out = tmp_path / 'dumped.py'
    cfg.dump(str(out))
    again = Config.fromfile(str(out))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict()


def test_pure_python_constructs_and_json_yaml(tmp_path):
    write(tmp_path / 'base.yaml', 'a: 1\nb: {c: 2}\n')
    child = write(tmp_path / 'child.py', """
        _base_ = './base.yaml'
        import math
        def helper(x):
            return x * 2
        b = dict(d=helper(2), e=math.pi > 3)
    """)
    cfg = Config.fromfile(str(child))
    assert cfg.to_dict() == {'a': 1, 'b': {'c': 2, 'd': 4, 'e': True}}


def test_custom_imports_from_an_outside_package(tmp_path, monkeypatch):
    pkg = tmp_path / 'outside_pkg'
    write(pkg / '__init__.py', '')
    write(pkg / 'my_head.py', """
        import torch.nn as nn
        from segkit.registry import HEADS

        @HEADS.register_module()
        class OutsideTestHead(nn.Module):
            def __init__(self, width):
                super().__init__()
                self.width = width
    """)
    cfg_file = write(tmp_path / 'cfg.py', """
        custom_imports = dict(imports=['outside_pkg.my_head'], allow_failed_imports=False)
        default_scope = 'mmseg'
        head = dict(type='OutsideTestHead', width=7)
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = Config.fromfile(str(cfg_file))
    from segkit.registry import MODELS
    head = MODELS.build(cfg.head)
    assert type(head).__name__ == 'OutsideTestHead' and head.width == 7


def test_custom_imports_failure_is_clear_or_tolerated(tmp_path):
    bad = write(tmp_path / 'cfg.py', "custom_imports = dict(imports=['no_such_pkg_xyz'])\n")
    with pytest.raises(ConfigError, match="could not import 'no_such_pkg_xyz'"):
        Config.fromfile(str(bad))
    ok = write(tmp_path / 'ok.py', "custom_imports = dict(imports=['no_such_pkg_xyz'], allow_failed_imports=True)\n")
    with pytest.warns(UserWarning, match='no_such_pkg_xyz'):
        Config.fromfile(str(ok))


def test_custom_imports_of_a_package_in_the_working_directory_says_to_put_it_on_the_path(tmp_path, monkeypatch):
    """``python /path/to/tools/train.py`` from a user's project folder: the folder is not on sys.path."""
    write(tmp_path / 'my_cwd_pkg/__init__.py', '')
    cfg = write(tmp_path / 'configs/cfg.py', "custom_imports = dict(imports=['my_cwd_pkg.models'])\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'path', [p for p in sys.path if p and Path(p).resolve() != tmp_path.resolve()])
    with pytest.raises(ConfigError, match=r"'my_cwd_pkg' is in the working directory .*run with PYTHONPATH=\."):
        Config.fromfile(str(cfg))


def test_print_config_tool(tree):
    result = subprocess.run([sys.executable, str(REPO / 'tools/print_config.py'), str(tree[1]),
                             '--cfg-options', 'model.decode_head.num_classes=3'],
                            capture_output=True, text=True, check=True)
    assert 'num_classes=3' in result.stdout and "type='EncoderDecoder'" in result.stdout
    bad = subprocess.run([sys.executable, str(REPO / 'tools/print_config.py'), str(tree[1]),
                          '--cfg-options', 'model.decod_head.x=1'], capture_output=True, text=True)
    assert bad.returncode == 1 and "model has no key 'decod_head'; did you mean 'decode_head'" in bad.stderr
