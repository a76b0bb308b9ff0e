"""Flow control nodes."""

from hush.core.nodes.flow.branch_node import BranchNode, NoBranchMatchedError

__all__ = ["BranchNode", "NoBranchMatchedError"]
