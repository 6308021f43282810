"""Names of the network's losses (kept in a torch-light module so that tasks/MTL code can import it)."""

LOSS_NAMES: tuple[str, ...] = (
    "rpn_objectness",
    "rpn_box",
    "roi_cls",
    "roi_box",
    "visible_mask",
    "amodal_mask",
    "occlusion",
)
