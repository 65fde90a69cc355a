"""Blueprint: REST routes (start run, list runs, describe run, re-run failed items), IAM-authorized."""

from __future__ import annotations

from typing import Any

from chalice import Blueprint, IAMAuthorizer

blueprint = Blueprint(__name__)
iam_auth = IAMAuthorizer()


@blueprint.route("/runs", methods=["GET"], authorizer=iam_auth)
def list_runs() -> dict[str, Any]:
    raise NotImplementedError
