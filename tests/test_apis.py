"""init_model / inference_model / show_result on a real CamVid image, and the overlay drawing."""
import cv2
import numpy as np
import pytest
import torch

from conftest import load_reference, shared_path
from segkit.apis import inference_model, init_model, show_result
from segkit.checkpoint import CheckpointError, save_checkpoint
from segkit.config import Config
from segkit.models import EncoderDecoder
from segkit.registry import MODELS
from segkit.visualization import default_palette, draw_overlay

pytestmark = pytest.mark.filterwarnings('ignore:CrossEntropyLoss. avg_non_ignore')
PALETTE = [[128, 128, 128], [128, 0, 0], [192, 192, 128]]


@pytest.fixture(scope='module')
def camvid_image():
    return str(next(shared_path('data', 'camvid', 'img_dir', 'val').glob('*.jpg')))


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    """A PSPNet (MMSeg reference weights) config + checkpoint with dataset_meta, as training would save them."""
    pytest.importorskip('segkit.datasets.transforms', reason='needs the data transforms')
    ref = load_reference('pspnet_small.pt')
    folder = tmp_path_factory.mktemp('model')
    model_cfg = dict(ref['model_cfg'])
    model_cfg['backbone'] = dict(model_cfg['backbone'], init_cfg=dict(type='Pretrained', checkpoint='/absent.pth'))
    cfg = Config(dict(model=model_cfg, test_pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(240, 180), keep_ratio=True),
        dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
    cfg.dump(str(folder / 'cfg.py'))
    classes = [f'class{i}' for i in range(19)]
    save_checkpoint(dict(state_dict=ref['state_dict'],
                         meta=dict(dataset_meta=dict(classes=classes, palette=default_palette(19).tolist()))),
                    str(folder / 'model.pth'))
    return folder / 'cfg.py', folder / 'model.pth'


def test_init_model(model_files):
    cfg_path, ckpt = model_files
    model = init_model(str(cfg_path), str(ckpt))  # the absent Pretrained backbone file is never read
    assert not model.training and model.dataset_meta['classes'][3] == 'class3'
    assert model.cfg.model.backbone.init_cfg is None and model.cfg.model.train_cfg is None
    assert init_model(Config.fromfile(str(cfg_path))).dataset_meta is None  # random weights, no meta
    with pytest.raises(TypeError, match='config'):
        init_model(dict(model=None))


def test_init_model_checkpoint_mismatches(model_files, tmp_path):
    cfg = Config.fromfile(str(model_files[0]))
    cfg.model.auxiliary_head = None  # inference without the auxiliary head: its tensors are skipped
    with pytest.warns(UserWarning, match='auxiliary_head.conv_seg.weight'):
        model = init_model(cfg, str(model_files[1]))
    assert not hasattr(model, 'auxiliary_head')
    # BatchNorm's num_batches_tracked counters do not affect inference: a file without them loads, as in testing
    state = torch.load(model_files[1], weights_only=True)['state_dict']
    counters = [key for key in state if key.endswith('num_batches_tracked')]
    assert counters
    torch.save(dict(state_dict={k: v for k, v in state.items() if k not in counters}), tmp_path / 'no_counters.pth')
    with pytest.warns(UserWarning, match='auxiliary_head'):
        with pytest.warns(UserWarning, match='carries no dataset_meta .* model.dataset_meta is None'):
            assert init_model(cfg, str(tmp_path / 'no_counters.pth')).dataset_meta is None
    # without meta in the file, the config's test dataset names the classes when their number fits the model
    cfg.test_dataloader = dict(dataset=dict(type='CityscapesDataset'))
    with pytest.warns(UserWarning, match="carries no dataset_meta .* the config's test dataset, CityscapesDataset"):
        meta = init_model(cfg, str(tmp_path / 'no_counters.pth')).dataset_meta
    assert meta['classes'][:2] == ('road', 'sidewalk') and len(meta['palette']) == 19
    cfg.model.decode_head.num_classes = 5
    with pytest.raises(CheckpointError, match='does not provide every weight.*decode_head.conv_seg.weight'):
        init_model(cfg, str(model_files[1]))


def test_inference_model_and_show_result(model_files, camvid_image, tmp_path):
    model = init_model(str(model_files[0]), str(model_files[1]))
    result = inference_model(model, camvid_image)
    image = cv2.imread(camvid_image)
    assert result['ori_shape'] == image.shape[:2] and result['img_shape'] == (180, 240)
    assert result['seg_logits'].shape == (19, *image.shape[:2])
    torch.testing.assert_close(result['pred_sem_seg'], result['seg_logits'].argmax(0))
    # an array input and a list give the same result; the list gives a list
    both = inference_model(model, [image, camvid_image])
    assert isinstance(both, list) and len(both) == 2
    for other in both:
        torch.testing.assert_close(other['seg_logits'], result['seg_logits'])
    # the logits equal a direct whole-image run at the resized scale, resized back
    resized = cv2.resize(image, (240, 180), interpolation=cv2.INTER_LINEAR)
    direct = model.test_step(dict(inputs=[torch.from_numpy(resized).permute(2, 0, 1)],
                                  data_samples=[dict(img_shape=(180, 240), ori_shape=image.shape[:2])]))[0]
    torch.testing.assert_close(direct['seg_logits'], result['seg_logits'], atol=1e-4, rtol=1e-4)

    out_file = tmp_path / 'vis' / 'overlay.png'
    overlay = show_result(camvid_image, result, model.dataset_meta['palette'], opacity=0.5, out_file=str(out_file))
    assert overlay.shape == image.shape and out_file.is_file()
    np.testing.assert_array_equal(cv2.imread(str(out_file)), overlay)
    expected = draw_overlay(image, result['pred_sem_seg'], model.dataset_meta['palette'], 0.5)
    np.testing.assert_array_equal(overlay, expected)


def test_draw_overlay_blends_palette_colours():
    img = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 2], [255, 0, 1]])
    out = draw_overlay(img, torch.from_numpy(labels), PALETTE, opacity=0.25)
    np.testing.assert_array_equal(out[0, 1], np.round(0.75 * 100 + 0.25 * np.array([0, 0, 128])))  # BGR order
    np.testing.assert_array_equal(out[1, 0], img[1, 0])  # no colour for 255: the image shows through
    np.testing.assert_array_equal(draw_overlay(img, labels, PALETTE, opacity=1.0)[0, 2], [128, 192, 192])
    assert draw_overlay(img, labels).shape == img.shape  # default palette
    with pytest.raises(ValueError, match='label map size'):
        draw_overlay(img, labels[:1])


def test_init_model_names_a_misspelt_type_by_its_config_key():
    cfg = Config(dict(model=dict(
        type='EncoderDecoder',
        backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
        decode_head=dict(type='FCNHaed', in_channels=64, channels=4, num_classes=3))))
    with pytest.raises(KeyError) as e:
        init_model(cfg)
    assert str(e.value).startswith("config key model.decode_head.type: 'FCNHaed' is not registered")


TINY_MODEL = dict(
    type='EncoderDecoder',
    backbone=dict(type='MixVisionTransformer', embed_dims=8, num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
    decode_head=dict(type='SegformerHead', in_channels=[8, 16, 40, 64], in_index=[0, 1, 2, 3], channels=8,
                     num_classes=3))


def test_init_model_gives_a_top_level_data_preprocessor_to_a_model_without_one():
    """The documented rule (Runner.from_cfg follows it): else inference would silently skip normalisation."""
    top = dict(type='SegDataPreProcessor', mean=[1., 2., 3.], std=[4., 5., 6.], bgr_to_rgb=True)
    model = init_model(Config(dict(model=TINY_MODEL, data_preprocessor=top)))
    assert model.data_preprocessor.mean.flatten().tolist() == [1., 2., 3.]


@MODELS.register_module(force=True)
class FixedPartsSegmentor(EncoderDecoder):
    """A user's segmentor whose constructor takes neither ``pretrained`` nor ``train_cfg``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(backbone=TINY_MODEL['backbone'], decode_head=dict(TINY_MODEL['decode_head'],
                                                                           num_classes=num_classes))


def test_init_model_builds_a_segmentor_without_pretrained_and_train_cfg_arguments():
    model = init_model(Config(dict(model=dict(type='FixedPartsSegmentor', num_classes=4))))
    assert isinstance(model, FixedPartsSegmentor) and model.num_classes == 4
