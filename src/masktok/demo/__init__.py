"""The masktok demo: a gradio app (extra ``[demo]``) to tokenize masks, decode mask words and chat
with a mask-word VLM, started by ``masktok demo``.

    from masktok.demo import build_app, load_demo_models
    app = build_app(load_demo_models(tokenizer="my_tokenizer/"))
    app.launch()

Modules: :mod:`~masktok.demo.inputs` (uploads and the image editor → checked images and masks),
:mod:`~masktok.demo.sample_catalog` (the bundled samples for the pickers),
:mod:`~masktok.demo.models` (what runs), :mod:`~masktok.demo.highlight` (spans → highlighted
text), :mod:`~masktok.demo.feedback` (status lines), :mod:`~masktok.demo.tabs` and
:mod:`~masktok.demo.app`. Overlays are drawn by :mod:`masktok.masks.render` and
:mod:`masktok.eval.report`.
"""

from masktok.demo.app import build_app, launch_app
from masktok.demo.inputs import DemoInputError
from masktok.demo.models import DemoModels, load_demo_models
from masktok.demo.sample_catalog import SampleCatalog

__all__ = ["DemoInputError", "DemoModels", "SampleCatalog", "build_app", "launch_app",
           "load_demo_models"]
