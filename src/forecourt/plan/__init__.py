"""Compiled runtime plans built from validated configs."""

from forecourt.plan.model import Plan, RoutePlan, ServicePlan, TargetSource

__all__ = ["Plan", "RoutePlan", "ServicePlan", "TargetSource"]
