# Runtime defaults shared by every config (MMSeg 1.x's default_runtime.py), with TensorBoard logging on.
default_scope = 'mmseg'  # accepted for MMSeg compatibility; segkit has one registry scope
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # falls back to gloo when there is no GPU
    retain_freed_memory=True,  # segkit: glibc keeps freed memory for reuse (faster CPU steps, RSS stays at peak)
)
vis_backends = [dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

tta_model = dict(type='SegTTAModel')
