"""Checkpoint I/O: safe loading, prefixes, mismatch reports, foreign pickled objects, atomic saves."""
import collections
import os
import pickle
import textwrap

import pytest
import torch
import torch.nn as nn

from segkit.checkpoint import (CheckpointError, extract_state_dict, load_checkpoint, load_file, load_state_dict,
                               save_checkpoint)


def test_bare_and_wrapped_state_dicts_with_module_prefix(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    ddp_style = {f'module.{k}': v + 1 for k, v in model.state_dict().items()}
    for i, payload in enumerate([ddp_style, {'state_dict': ddp_style, 'meta': {'x': 1}}]):
        path = tmp_path / f'{i}.pth'
        torch.save(payload, path)
        fresh = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
        load_checkpoint(fresh, str(path))
        assert torch.equal(fresh[0].weight, model[0].weight + 1)


def test_prefix_selects_a_submodule():
    state = {'backbone.w': torch.ones(1), 'decode_head.w': torch.zeros(1)}
    assert list(extract_state_dict(state, prefix='backbone.')) == ['w']
    with pytest.raises(CheckpointError, match="no keys under the prefix 'neck.'"):
        extract_state_dict(state, prefix='neck.')


def test_mismatch_report_lists_missing_unexpected_and_shapes_together():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1))
    state = dict(model.state_dict())
    state['1.weight'] = torch.zeros(5, 4, 1, 1)
    del state['0.bias']
    state['extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError) as e:
        load_state_dict(model, state)
    msg = str(e.value)
    assert '0.bias' in msg and 'extra.weight' in msg and '1.weight: checkpoint (5, 4, 1, 1) vs model (2, 4, 1, 1)' in msg
    report = load_state_dict(model, state, strict=False)
    assert report['missing_keys'] == ['0.bias'] and report['unexpected_keys'] == ['extra.weight']
    assert torch.equal(model[0].weight, state['0.weight'])        # matching tensors were loaded


def test_urls_missing_and_corrupt_files_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match='never downloads'):
        load_file('https://download.openmmlab.com/x.pth')
    with pytest.raises(FileNotFoundError, match='not found'):
        load_file(str(tmp_path / 'nope.pth'))
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='bad.pth'):
        load_file(str(bad))


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    """Not torch's advice to retry with weights_only=False, which would not help and cannot be given from the CLI."""
    files = {'notes.txt': b'hello\n', 'empty.pth': b'', 'plain.pkl': pickle.dumps({'a': 1})}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        for weights_only in (True, False):
            with pytest.raises(CheckpointError, match=f'{name} is not a PyTorch checkpoint') as e:
                load_file(str(tmp_path / name), weights_only=weights_only)
            assert 'weights_only' not in str(e.value)


def test_a_checkpoint_needing_a_blocked_global_is_refused_with_the_reason(tmp_path):
    path = tmp_path / 'unsafe.pth'
    torch.save({'state_dict': {'w': torch.ones(1)}, 'hook': os.system}, path)
    with pytest.raises(CheckpointError, match=r'(?s)cannot read checkpoint .*unsafe\.pth.*GLOBAL \S*system'):
        load_file(str(path))


def test_foreign_pickled_objects_load_as_inert_placeholders(tmp_path, monkeypatch):
    """MMEngine training checkpoints pickle e.g. a MessageHub: weights must still load with weights_only=True."""
    pkg = tmp_path / 'pkg'
    pkg.mkdir()
    (pkg / 'foreign_hub.py').write_text(textwrap.dedent("""
        import os
        class Hub:
            def __init__(self, log):
                self.log = log
            def __setstate__(self, state):
                os.environ['SEGKIT_TEST_EXECUTED'] = '1'   # would run if the class itself were used
                self.__dict__.update(state)
    """))
    monkeypatch.syspath_prepend(str(pkg))
    import foreign_hub
    path = tmp_path / 'mm.pth'
    torch.save({'state_dict': collections.OrderedDict(w=torch.arange(3.)), 'meta': {'classes': ('a',)},
                'message_hub': foreign_hub.Hub([1, 2])}, path)
    monkeypatch.delenv('SEGKIT_TEST_EXECUTED', raising=False)
    with pytest.warns(UserWarning, match='foreign_hub.Hub'):
        checkpoint = load_file(str(path))
    assert torch.equal(checkpoint['state_dict']['w'], torch.arange(3.))
    assert checkpoint['meta'] == {'classes': ('a',)}
    assert type(checkpoint['message_hub']) is not foreign_hub.Hub
    assert 'SEGKIT_TEST_EXECUTED' not in os.environ


def test_save_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / 'ckpt.pth'
    save_checkpoint({'state_dict': {'w': torch.ones(2)}}, str(path))

    def broken_save(obj, f):
        f.write(b'partial')
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({'state_dict': {'w': torch.zeros(2)}}, str(path))
    monkeypatch.undo()
    assert torch.equal(load_file(str(path))['state_dict']['w'], torch.ones(2))
    assert os.listdir(tmp_path) == ['ckpt.pth']                   # no temporary file left behind


def test_saved_checkpoints_get_the_usual_file_mode(tmp_path):
    """Written through a private temporary file, the checkpoint still gets 0666 minus the umask (teammates on
    shared storage can read it)."""
    umask = os.umask(0o022)
    try:
        save_checkpoint({'state_dict': {}}, str(tmp_path / 'a.pth'))
    finally:
        os.umask(umask)
    assert (tmp_path / 'a.pth').stat().st_mode & 0o777 == 0o644
