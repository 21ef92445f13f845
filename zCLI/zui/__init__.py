"""zUI: the YAML files that declare an app's blocks, keys and actions."""

from .funcs import FuncCall, Ref
from .keys import RESERVED_CHOICES, KeySpec
from .loader import CONSTRUCTS, ZuiLoader
from .model import (
    Action,
    Block,
    Dialog,
    DialogField,
    Entry,
    Link,
    Menu,
    Message,
    Show,
    Wizard,
    WizardStep,
    ZuiFile,
)

__all__ = [
    "CONSTRUCTS",
    "RESERVED_CHOICES",
    "Action",
    "Block",
    "Dialog",
    "DialogField",
    "Entry",
    "FuncCall",
    "KeySpec",
    "Link",
    "Menu",
    "Message",
    "Ref",
    "Show",
    "Wizard",
    "WizardStep",
    "ZuiFile",
    "ZuiLoader",
]
