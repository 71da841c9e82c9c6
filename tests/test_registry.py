"""Registry: register/build, unknown types, duplicates, aliases and scopes."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch.nn as nn

from segkit.registry import (BACKBONES, HEADS, LOSSES, MODELS, NECKS, OPTIMIZERS, SEGMENTORS, VISBACKENDS, Registry,
                             UnknownTypeError)


def test_register_as_decorator_and_call_then_build():
    reg = Registry('things')

    @reg.register_module()
    class Alpha:
        def __init__(self, x=1, y=2):
            self.x, self.y = x, y

    reg.register_module(name=['Beta', 'Gamma'], module=Alpha)
    obj = reg.build(dict(type='Alpha', x=5), default_args=dict(y=7, x=0))
    assert (obj.x, obj.y) == (5, 7)
    assert isinstance(reg.build(dict(type='Gamma')), Alpha)
    assert isinstance(reg.build(dict(type=Alpha)), Alpha)           # a class as type
    assert 'Beta' in reg and 'Delta' not in reg
    assert reg.keys() == ['Alpha', 'Beta', 'Gamma']
    cfg = dict(type='Alpha', x=3)
    reg.build(cfg)
    assert cfg == dict(type='Alpha', x=3)                           # the config is not mutated


def test_unknown_type_names_registry_suggestions_and_how_to_register():
    reg = Registry('models_test')
    reg.register_module(name='SegformerHead', module=type('H', (), {}))
    with pytest.raises(KeyError) as e:
        reg.build(dict(type='SegFormerHead'))
    msg = str(e.value)
    assert "'models_test'" in msg and "Did you mean 'SegformerHead'" in msg
    assert 'register_module' in msg and 'custom_imports' in msg


def test_duplicate_name_is_an_error_unless_forced():
    reg = Registry('dups')

    @reg.register_module()
    class A:
        pass

    with pytest.raises(KeyError, match='already registered') as e:
        @reg.register_module(name='A')
        class Other:
            pass
    assert 'Other' in str(e.value) and 'test_duplicate_name_is_an_error_unless_forced.<locals>.A' in str(e.value)

    @reg.register_module(name='A', force=True)
    class Replacement:
        pass
    assert reg.get('A') is Replacement


def test_missing_type_and_bad_args_are_clear():
    reg = Registry('r')
    reg.register_module(module=type('K', (), {'__init__': lambda self, a: None}))
    with pytest.raises(KeyError, match='no "type" key'):
        reg.build(dict(a=1))
    with pytest.raises(TypeError, match='building K failed'):
        reg.build(dict(type='K', b=2))


def test_mmseg_0x_and_1x_decorators_share_one_namespace():
    assert BACKBONES is MODELS and HEADS is MODELS and NECKS is MODELS and LOSSES is MODELS and SEGMENTORS is MODELS

    @BACKBONES.register_module()
    class OldStyleRegistryTestBackbone(nn.Module):
        pass
    assert MODELS.get('OldStyleRegistryTestBackbone') is OldStyleRegistryTestBackbone
    del MODELS._modules['OldStyleRegistryTestBackbone']


def test_scope_prefix_and_torch_optimizers():
    assert OPTIMIZERS.get('AdamW').__module__.startswith('torch.optim')
    assert OPTIMIZERS.get('mmengine.SGD') is OPTIMIZERS.get('SGD')
    opt = OPTIMIZERS.build(dict(type='SGD', lr=0.1), default_args=dict(params=nn.Linear(2, 2).parameters()))
    assert opt.defaults['lr'] == 0.1


def run_fresh(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter, where segkit's built-in components are not imported yet."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get('PYTHONPATH', '')]))
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120)


def test_user_registration_before_builtins_are_loaded():
    """A user package that imports only segkit.registry registers before segkit's own classes are loaded:
    a force=True replacement of a built-in must survive their loading, a clash without force must be reported
    at the user's decorator (naming both classes), and listing a registry must show the built-ins."""
    result = run_fresh("""
        import torch.nn as nn
        from segkit.registry import MODELS

        @MODELS.register_module(force=True)
        class CrossEntropyLoss(nn.Module):
            def __init__(self, **kwargs):
                super().__init__()

        head = MODELS.build(dict(type='FCNHead', in_channels=8, channels=4, num_classes=3))
        assert type(head.loss_decode) is CrossEntropyLoss, type(head.loss_decode)
        """)
    assert result.returncode == 0, result.stderr
    result = run_fresh("""
        import torch.nn as nn
        from segkit.registry import MODELS
        assert 'MixVisionTransformer' in MODELS.keys() and len(MODELS) == len(list(MODELS)) > 10
        try:
            @MODELS.register_module()
            class SegformerHead(nn.Module):
                pass
        except KeyError as e:
            print(e)
        """)
    assert result.returncode == 0, result.stderr
    assert '__main__.SegformerHead' in result.stdout
    assert 'segkit.models.decode_heads.segformer_head.SegformerHead' in result.stdout


@pytest.mark.filterwarnings('ignore:CrossEntropyLoss. avg_non_ignore')
@pytest.mark.parametrize('part, key, close', [
    (dict(loss_decode=[dict(type='CrossEntropyLoss'), dict(type='DiceLos')]), 'decode_head.loss_decode.1.type',
     "Did you mean 'DiceLoss'"),
    (dict(norm_cfg=dict(type='BNN')), 'decode_head.norm_cfg.type', "'BN'"),
])
def test_unknown_type_inside_a_config_names_its_key_and_the_close_names(part, key, close):
    cfg = dict(type='EncoderDecoder',
               backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
               decode_head=dict(type='FCNHead', in_channels=64, channels=4, num_classes=3, **part))
    with pytest.raises(UnknownTypeError) as e:
        MODELS.build(cfg)
    assert str(e.value).startswith(f'config key {key}: ') and close in str(e.value)


def test_unknown_type_hint_names_the_registry_as_segkit_exports_it():
    with pytest.raises(KeyError, match=r'@VISBACKENDS\.register_module\(\)'):
        VISBACKENDS.build(dict(type='LocalVisBackendd'))
