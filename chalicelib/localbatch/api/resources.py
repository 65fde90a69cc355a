"""Compute environment, job queue, job definition and tag operations, with AWS's validation rules."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from chalicelib.localbatch import arns, wire
from chalicelib.localbatch.api import shapes, validation
from chalicelib.localbatch.api.paging import page
from chalicelib.localbatch.errors import ClientException
from chalicelib.localbatch.model import ComputeEnvironment, JobDefinition, JobQueue
from chalicelib.localbatch.scheduling.scheduler import Scheduler

MAX_ENVIRONMENTS = 50
MAX_QUEUES = 50
MAX_CES_PER_QUEUE = 3
JOB_DEFINITION_MAX_BYTES = 24 * 1024
_CE_TYPES = ("EC2", "SPOT", "FARGATE", "FARGATE_SPOT")
_ALLOCATION = ("BEST_FIT", "BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED", "SPOT_PRICE_CAPACITY_OPTIMIZED")
_DEFINITION_REF = re.compile(r"^(?P<name>[A-Za-z0-9_-]{1,128})(:(?P<rev>[0-9]+))?$")


class ResourceOperations:
    """Operations on everything that is not a job. Callers hold the engine lock."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    # -- lookups --------------------------------------------------------------------------------
    def environment(self, ref: Any, field: str) -> ComputeEnvironment:
        name = arns.name_from_arn(validation.as_str(ref, field, min_len=1), "compute-environment")
        ce = self.scheduler.ces.get(name)
        if ce is None:
            raise ClientException(f"{field}: compute environment {name!r} does not exist")
        return ce

    def queue(self, ref: Any, field: str) -> JobQueue:
        name = arns.name_from_arn(validation.as_str(ref, field, min_len=1), "job-queue")
        queue = self.scheduler.queues.get(name)
        if queue is None:
            raise ClientException(f"{field}: job queue {name!r} does not exist")
        return queue

    def job_definition(self, ref: Any, field: str) -> JobDefinition:
        """Resolves name, name:revision or an ARN; a bare name means the latest ACTIVE revision."""
        text = arns.name_from_arn(validation.as_str(ref, field, min_len=1), "job-definition")
        match = _DEFINITION_REF.match(text)
        if match is None:
            raise validation.fail(field, "a job definition name, name:revision or ARN", ref)
        revisions = self.scheduler.job_definitions.get(match["name"], [])
        if match["rev"] is not None:
            for jd in revisions:
                if jd.revision == int(match["rev"]):
                    return jd
            raise ClientException(f"{field}: job definition {text!r} does not exist")
        active = [jd for jd in revisions if jd.status == "ACTIVE"]
        if not active:
            raise ClientException(f"{field}: job definition {text!r} has no ACTIVE revision")
        return active[-1]

    # -- compute environments -------------------------------------------------------------------
    def _compute_resources(self, value: Any, field: str, *, partial: bool) -> dict[str, Any]:
        body = copy.deepcopy(validation.as_dict(value, field))
        if not partial or "type" in body:
            body["type"] = validation.as_enum(validation.require(body, "type", f"{field}.type"), f"{field}.type", _CE_TYPES)
        if not partial or "maxvCpus" in body:
            body["maxvCpus"] = validation.as_int(validation.require(body, "maxvCpus", f"{field}.maxvCpus"), f"{field}.maxvCpus",
                                        minimum=0)
        for key in ("minvCpus", "desiredvCpus"):
            if body.get(key) is not None:
                validation.as_int(body[key], f"{field}.{key}", minimum=0)
        if body.get("minvCpus") is not None and body.get("maxvCpus") is not None \
                and body["minvCpus"] > body["maxvCpus"]:
            raise ClientException(f"{field}.minvCpus: must not exceed maxvCpus ({body['maxvCpus']})")
        if body.get("allocationStrategy") is not None:
            validation.as_enum(body["allocationStrategy"], f"{field}.allocationStrategy", _ALLOCATION)
        if body.get("bidPercentage") is not None:
            validation.as_int(body["bidPercentage"], f"{field}.bidPercentage", minimum=0, maximum=100)
        return body

    def create_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        name = validation.as_str(validation.require(body, "computeEnvironmentName"), "computeEnvironmentName",
                        pattern=validation.RESOURCE_NAME_RE, expected="1-128 letters, digits, '-' or '_'")
        if name in self.scheduler.ces:
            raise ClientException(f"computeEnvironmentName: {name!r} already exists")
        if len(self.scheduler.ces) >= MAX_ENVIRONMENTS:
            raise ClientException(f"computeEnvironmentName: at most {MAX_ENVIRONMENTS} compute environments")
        kind = validation.as_enum(validation.require(body, "type"), "type", ("MANAGED", "UNMANAGED"))
        state = validation.as_enum(body.get("state", "ENABLED"), "state", ("ENABLED", "DISABLED"))
        resources = None
        if kind == "MANAGED":
            resources = self._compute_resources(validation.require(body, "computeResources"), "computeResources",
                                                partial=False)
        elif body.get("computeResources") is not None:
            raise ClientException("computeResources: not allowed on an UNMANAGED compute environment")
        ce = ComputeEnvironment(name=name, arn=arns.compute_environment_arn(name), type=kind, state=state,
                                compute_resources=resources, tags=validation.tags(body.get("tags") or {}),
                                service_role=None if body.get("serviceRole") is None
                                else validation.as_str(body["serviceRole"], "serviceRole"))
        self.scheduler.ces[name] = ce
        self.scheduler.store.save_compute_environment(ce)
        return {"computeEnvironmentName": name, "computeEnvironmentArn": ce.arn}

    def update_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        ce = self.environment(validation.require(body, "computeEnvironment"), "computeEnvironment")
        if body.get("state") is not None:
            ce.state = validation.as_enum(body["state"], "state", ("ENABLED", "DISABLED"))
        if body.get("computeResources") is not None:
            if ce.compute_resources is None:
                raise ClientException("computeResources: the compute environment is UNMANAGED")
            update = self._compute_resources(body["computeResources"], "computeResources", partial=True)
            merged = {**ce.compute_resources, **update}
            if merged.get("minvCpus") is not None and merged["minvCpus"] > merged["maxvCpus"]:
                raise ClientException(f"computeResources.minvCpus: must not exceed maxvCpus ({merged['maxvCpus']})")
            ce.compute_resources = merged
        if body.get("serviceRole") is not None:
            ce.service_role = validation.as_str(body["serviceRole"], "serviceRole")
        self.scheduler.resources_changed()  # armed launches and fit checks were made under the old settings
        self.scheduler.store.save_compute_environment(ce)
        return {"computeEnvironmentName": ce.name, "computeEnvironmentArn": ce.arn}

    def delete_compute_environment(self, body: dict[str, Any]) -> dict[str, Any]:
        ce = self.environment(validation.require(body, "computeEnvironment"), "computeEnvironment")
        if ce.state != "DISABLED":
            raise ClientException(f"computeEnvironment: {ce.name!r} must be DISABLED before it is deleted")
        users = [q.name for q in self.scheduler.queues.values() if any(n == ce.name for _, n in q.ce_order)]
        if users:
            raise ClientException(f"computeEnvironment: {ce.name!r} is still used by job queue {users[0]!r}")
        del self.scheduler.ces[ce.name]
        self.scheduler.store.delete_compute_environment(ce.name)
        return {}

    def describe_compute_environments(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = validation.as_list(body.get("computeEnvironments") or [], "computeEnvironments", max_items=100)
        ces = [self.scheduler.ces[n] for n in sorted(self.scheduler.ces)]
        if wanted:
            names = {arns.name_from_arn(validation.as_str(w, "computeEnvironments[]"), "compute-environment") for w in wanted}
            ces = [ce for ce in ces if ce.name in names]
        items, token = page(ces, body, "maxResults", limit=100)
        return {"computeEnvironments": [wire.compute_environment(ce) for ce in items], **token}

    # -- job queues -----------------------------------------------------------------------------
    def _ce_order(self, value: Any) -> list[tuple[int, str]]:
        entries = validation.as_list(value, "computeEnvironmentOrder", max_items=MAX_CES_PER_QUEUE)
        if not entries:
            raise ClientException("computeEnvironmentOrder: at least one compute environment is required")
        order = []
        for i, entry in enumerate(entries):
            path = f"computeEnvironmentOrder[{i}]"
            entry = validation.as_dict(entry, path)
            rank = validation.as_int(validation.require(entry, "order", f"{path}.order"), f"{path}.order", minimum=0)
            ce = self.environment(validation.require(entry, "computeEnvironment", f"{path}.computeEnvironment"),
                                  f"{path}.computeEnvironment")
            order.append((rank, ce.name))
        return sorted(order)

    @staticmethod
    def _time_limit_actions(value: Any) -> list[dict[str, Any]]:
        actions = []
        for i, entry in enumerate(validation.as_list(value, "jobStateTimeLimitActions")):
            path = f"jobStateTimeLimitActions[{i}]"
            entry = validation.as_dict(entry, path)
            actions.append({
                "reason": validation.as_str(validation.require(entry, "reason", f"{path}.reason"), f"{path}.reason", min_len=1),
                "state": validation.as_enum(validation.require(entry, "state", f"{path}.state"), f"{path}.state", ("RUNNABLE",)),
                "maxTimeSeconds": validation.as_int(validation.require(entry, "maxTimeSeconds", f"{path}.maxTimeSeconds"),
                                           f"{path}.maxTimeSeconds", minimum=600, maximum=86400),
                "action": validation.as_enum(validation.require(entry, "action", f"{path}.action"), f"{path}.action", ("CANCEL",)),
            })
        return actions

    def create_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        name = validation.as_str(validation.require(body, "jobQueueName"), "jobQueueName", pattern=validation.RESOURCE_NAME_RE,
                        expected="1-128 letters, digits, '-' or '_'")
        if name in self.scheduler.queues:
            raise ClientException(f"jobQueueName: {name!r} already exists")
        if len(self.scheduler.queues) >= MAX_QUEUES:
            raise ClientException(f"jobQueueName: at most {MAX_QUEUES} job queues")
        queue = JobQueue(
            name=name, arn=arns.queue_arn(name),
            priority=validation.as_int(validation.require(body, "priority"), "priority", minimum=0, maximum=1000),
            state=validation.as_enum(body.get("state", "ENABLED"), "state", ("ENABLED", "DISABLED")),
            ce_order=self._ce_order(validation.require(body, "computeEnvironmentOrder")),
            tags=validation.tags(body.get("tags") or {}),
            seq=max((q.seq for q in self.scheduler.queues.values()), default=0) + 1,
            time_limit_actions=self._time_limit_actions(body.get("jobStateTimeLimitActions") or []),
            scheduling_policy_arn=None if body.get("schedulingPolicyArn") is None
            else validation.as_str(body["schedulingPolicyArn"], "schedulingPolicyArn", min_len=1),
        )
        self.scheduler.queues[name] = queue
        self.scheduler.store.save_queue(queue)
        return {"jobQueueName": name, "jobQueueArn": queue.arn}

    def update_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(validation.require(body, "jobQueue"), "jobQueue")
        if body.get("state") is not None:
            queue.state = validation.as_enum(body["state"], "state", ("ENABLED", "DISABLED"))
        if body.get("priority") is not None:
            queue.priority = validation.as_int(body["priority"], "priority", minimum=0, maximum=1000)
        if body.get("computeEnvironmentOrder") is not None:
            queue.ce_order = self._ce_order(body["computeEnvironmentOrder"])
        if body.get("jobStateTimeLimitActions") is not None:
            queue.time_limit_actions = self._time_limit_actions(body["jobStateTimeLimitActions"])
        self.scheduler.resources_changed()  # armed launches and fit checks were made under the old settings
        self.scheduler.store.save_queue(queue)
        return {"jobQueueName": queue.name, "jobQueueArn": queue.arn}

    def delete_job_queue(self, body: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(validation.require(body, "jobQueue"), "jobQueue")
        if queue.state != "DISABLED":
            raise ClientException(f"jobQueue: {queue.name!r} must be DISABLED before it is deleted")
        for job in self.scheduler.top_level:
            if job.sub.queue == queue.name and not job.status.is_terminal:
                self.scheduler.terminate(job, "The job queue was deleted")
        del self.scheduler.queues[queue.name]
        self.scheduler.store.delete_queue(queue.name)
        return {}

    def describe_job_queues(self, body: dict[str, Any]) -> dict[str, Any]:
        wanted = validation.as_list(body.get("jobQueues") or [], "jobQueues", max_items=100)
        queues = sorted(self.scheduler.queues.values(), key=lambda q: q.seq)
        if wanted:
            names = {arns.name_from_arn(validation.as_str(w, "jobQueues[]"), "job-queue") for w in wanted}
            queues = [q for q in queues if q.name in names]
        items, token = page(queues, body, "maxResults", limit=100)
        return {"jobQueues": [wire.job_queue(q) for q in items], **token}

    # -- job definitions ------------------------------------------------------------------------
    def register_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        name = validation.as_str(validation.require(body, "jobDefinitionName"), "jobDefinitionName", pattern=validation.RESOURCE_NAME_RE,
                        expected="1-128 letters, digits, '-' or '_'")
        kind = validation.as_enum(validation.require(body, "type"), "type", ("container", "multinode"))
        if kind != "container" or body.get("nodeProperties") is not None:
            raise ClientException("type: only 'container' job definitions run on the local engine")
        for other in ("ecsProperties", "eksProperties"):
            if body.get(other) is not None:
                raise ClientException(f"{other}: not supported by the local engine; use containerProperties")
        if len(json.dumps(body)) > JOB_DEFINITION_MAX_BYTES:
            raise ClientException(f"jobDefinition: size must be at most 24 KiB, got {len(json.dumps(body)) // 1024} KiB")
        container = copy.deepcopy(validation.as_dict(validation.require(body, "containerProperties"), "containerProperties"))
        validation.as_str(validation.require(container, "image", "containerProperties.image"), "containerProperties.image",
                 min_len=1, max_len=255)
        if container.get("command") is not None:
            shapes.command(container["command"], "containerProperties.command")
        if container.get("environment") is not None:
            shapes.environment(container["environment"], "containerProperties.environment")
        requirements = shapes.merge_requirements(container, "containerProperties")
        if "VCPU" in requirements:
            shapes.to_resources({"MEMORY": "4", **requirements}, "containerProperties")
        stored: dict[str, Any] = {"type": "container", "containerProperties": container,
                                  "parameters": validation.as_str_map(body.get("parameters") or {}, "parameters"),
                                  "tags": validation.tags(body.get("tags") or {}),
                                  "propagateTags": validation.as_bool(body.get("propagateTags", False), "propagateTags"),
                                  "platformCapabilities": self._platforms(body.get("platformCapabilities"))}
        strategy = shapes.retry_strategy(body.get("retryStrategy"))
        if strategy:
            stored["retryStrategy"] = strategy
        seconds = shapes.timeout(body.get("timeout"))
        if seconds:
            stored["timeout"] = {"attemptDurationSeconds": seconds}
        if body.get("schedulingPriority") is not None:
            stored["schedulingPriority"] = validation.as_int(body["schedulingPriority"], "schedulingPriority",
                                                    minimum=0, maximum=9999)
        revisions = self.scheduler.job_definitions.setdefault(name, [])
        revision = (revisions[-1].revision if revisions else 0) + 1
        jd = JobDefinition(name=name, revision=revision, arn=arns.job_definition_arn(name, revision),
                           status="ACTIVE", body=stored)
        revisions.append(jd)
        self.scheduler.store.save_job_definition(jd)
        return {"jobDefinitionName": name, "jobDefinitionArn": jd.arn, "revision": revision}

    @staticmethod
    def _platforms(value: Any) -> list[str]:
        items = validation.as_list(value if value is not None else ["EC2"], "platformCapabilities", max_items=1)
        return [validation.as_enum(item, f"platformCapabilities[{i}]", ("EC2", "FARGATE")) for i, item in enumerate(items)]

    def describe_job_definitions(self, body: dict[str, Any]) -> dict[str, Any]:
        refs = validation.as_list(body.get("jobDefinitions") or [], "jobDefinitions", max_items=100)
        every = [jd for name in sorted(self.scheduler.job_definitions) for jd in self.scheduler.job_definitions[name]]
        if refs:
            chosen = []
            for i, ref in enumerate(refs):
                text = arns.name_from_arn(validation.as_str(ref, f"jobDefinitions[{i}]"), "job-definition")
                chosen += [jd for jd in every if f"{jd.name}:{jd.revision}" == text or jd.name == text]
            every = chosen
        if body.get("jobDefinitionName") is not None:
            name = validation.as_str(body["jobDefinitionName"], "jobDefinitionName")
            every = [jd for jd in every if jd.name == name]
        if body.get("status") is not None:
            status = validation.as_enum(body["status"], "status", ("ACTIVE", "INACTIVE"))
            every = [jd for jd in every if jd.status == status]
        items, token = page(every, body, "maxResults", limit=100)
        return {"jobDefinitions": [wire.job_definition(jd) for jd in items], **token}

    def deregister_job_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        ref = validation.as_str(validation.require(body, "jobDefinition"), "jobDefinition")
        text = arns.name_from_arn(ref, "job-definition")
        if ":" not in text:
            raise validation.fail("jobDefinition", "name:revision or an ARN with a revision", ref)
        jd = self.job_definition(ref, "jobDefinition")
        jd.status = "INACTIVE"
        self.scheduler.store.save_job_definition(jd)
        return {}

    # -- tags -----------------------------------------------------------------------------------
    def _tag_holder(self, arn: Any) -> dict[str, str]:
        parsed = arns.resource_of_arn(validation.as_str(arn, "resourceArn", min_len=1))
        if parsed is None:
            raise validation.fail("resourceArn", "an AWS Batch ARN", arn)
        kind, name = parsed
        if kind == "job" and name in self.scheduler.jobs:
            if self.scheduler.jobs[name].parent is not None:  # as AWS: tags belong to the array job itself
                raise ClientException(f"resourceArn: {arn!r} is a child of an array job; tag the array job "
                                      f"({arns.job_arn(self.scheduler.jobs[name].parent.job_id)}) instead")
            return self.scheduler.jobs[name].sub.tags
        if kind == "job-queue" and name in self.scheduler.queues:
            return self.scheduler.queues[name].tags
        if kind == "compute-environment" and name in self.scheduler.ces:
            return self.scheduler.ces[name].tags
        if kind == "job-definition":
            jd = self.job_definition(arn, "resourceArn")
            return jd.body.setdefault("tags", {})  # type: ignore[no-any-return]
        raise ClientException(f"resourceArn: {arn!r} does not exist")

    def _save_tag_holder(self, arn: str) -> None:
        kind, name = arns.resource_of_arn(arn) or ("", "")
        if kind == "job-queue":
            self.scheduler.store.save_queue(self.scheduler.queues[name])
        elif kind == "compute-environment":
            self.scheduler.store.save_compute_environment(self.scheduler.ces[name])
        elif kind == "job-definition":
            self.scheduler.store.save_job_definition(self.job_definition(arn, "resourceArn"))
        elif kind == "job":
            sub = self.scheduler.jobs[name].sub
            sub.static_json = ""  # job details cache the fields a submission shares, tags included
            self.scheduler.store.save_submission_tags(sub)

    def tag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        holder = self._tag_holder(validation.require(body, "resourceArn"))
        new = validation.tags(validation.require(body, "tags"))
        if len({**holder, **new}) > 50:
            raise ClientException("tags: a resource can have at most 50 tags")
        holder.update(new)
        self._save_tag_holder(body["resourceArn"])
        return {}

    def untag_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        holder = self._tag_holder(validation.require(body, "resourceArn"))
        for key in validation.as_list(validation.require(body, "tagKeys"), "tagKeys"):
            holder.pop(key, None)
        self._save_tag_holder(body["resourceArn"])
        return {}

    def list_tags_for_resource(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"tags": dict(self._tag_holder(validation.require(body, "resourceArn")))}
