"""The hush core: graphs, nodes, references and the engine."""

from hush.core.call import NodeCall
from hush.core.engine import Hush
from hush.core.errors import (
    GraphBuildError,
    GraphDefinitionError,
    HushError,
    MissingInputError,
    NodeCancelledError,
    NodeError,
    NodeFailedError,
    NodeInputError,
    NodeReturnError,
    NodeTimeoutError,
    NodeValueError,
    RunError,
    RunOptionError,
)
from hush.core.nodes.base import END, START, BaseNode
from hush.core.nodes.code_node import CodeNode, code_node
from hush.core.nodes.flow.branch_node import BranchNode
from hush.core.nodes.graph.graph_node import GraphNode
from hush.core.nodes.parser_node import ParserNode
from hush.core.parsing import ParseError
from hush.core.policies import RetryPolicy
from hush.core.refs import PARENT, Each, Ref
from hush.core.run_options import Budget, Checkpoint, Labels, Progress
from hush.core.state import RunRecord

__all__ = [
    "END",
    "PARENT",
    "START",
    "BaseNode",
    "BranchNode",
    "Budget",
    "Checkpoint",
    "CodeNode",
    "Each",
    "GraphBuildError",
    "GraphDefinitionError",
    "GraphNode",
    "Hush",
    "HushError",
    "Labels",
    "MissingInputError",
    "NodeCall",
    "NodeCancelledError",
    "NodeError",
    "NodeFailedError",
    "NodeInputError",
    "NodeReturnError",
    "NodeTimeoutError",
    "NodeValueError",
    "ParseError",
    "ParserNode",
    "Progress",
    "Ref",
    "RetryPolicy",
    "RunError",
    "RunOptionError",
    "RunRecord",
    "code_node",
]
