"""The run wizard, one module per step (see screen.py for the flow, forms.py for how fields map to settings)."""
from damoc_tui.screens.wizard.screen import WizardScreen

__all__ = ["WizardScreen"]
