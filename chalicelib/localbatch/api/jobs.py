"""Job operations: SubmitJob, DescribeJobs, ListJobs, CancelJob, TerminateJob, with AWS's limits."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from chalicelib.localbatch import arns, wire
from chalicelib.localbatch.api import shapes, validation
from chalicelib.localbatch.api.paging import page
from chalicelib.localbatch.api.resources import ResourceOperations
from chalicelib.localbatch.errors import ClientException
from chalicelib.localbatch.model import ALL_STATUSES, Job, JobStatus, Submission
from chalicelib.localbatch.scheduling.scheduler import Scheduler

MAX_DEPENDENCIES = 20
MAX_ARRAY_SIZE = 10_000
MAX_SUBMIT_BYTES = 30 * 1024
MAX_OVERRIDES_CHARS = 8192
MAX_DESCRIBE = 100
_SHARE_RE = re.compile(r"^[A-Za-z0-9]{1,255}\*?$")
_SUBMIT_KEYS = {
    "jobName", "jobQueue", "jobDefinition", "arrayProperties", "dependsOn", "parameters",
    "containerOverrides", "retryStrategy", "timeout", "propagateTags", "tags", "shareIdentifier",
    "schedulingPriorityOverride", "nodeOverrides", "eksPropertiesOverride", "ecsPropertiesOverride",
    "consumableResourcePropertiesOverride",
}
_OVERRIDE_KEYS = {"command", "environment", "resourceRequirements", "vcpus", "memory", "instanceType"}


class JobOperations:
    """Operations on jobs. Callers hold the engine lock and wake the scheduler afterwards."""

    def __init__(self, scheduler: Scheduler, resources: ResourceOperations) -> None:
        self.scheduler = scheduler
        self.resources = resources
        self._seq = scheduler.store.max_submission_seq()

    def job(self, job_id: Any, field: str = "jobId") -> Job:
        job = self.scheduler.jobs.get(validation.as_str(job_id, field, min_len=1))
        if job is None:
            raise ClientException(f"{field}: job {job_id!r} does not exist")
        return job

    # -- SubmitJob ------------------------------------------------------------------------------
    def submit_job(self, body: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(body))
        if size > MAX_SUBMIT_BYTES:
            raise ClientException(f"Job size must be less than 30 KiB, got {(size + 1023) // 1024} KiB")
        validation.unknown_keys(body, _SUBMIT_KEYS, "SubmitJob")
        for unsupported in ("nodeOverrides", "eksPropertiesOverride", "ecsPropertiesOverride",
                            "consumableResourcePropertiesOverride"):
            if body.get(unsupported) is not None:
                raise ClientException(f"{unsupported}: not supported by the local engine")
        name = validation.as_str(validation.require(body, "jobName"), "jobName", pattern=validation.NAME_RE,
                        expected="1-128 characters: a letter or digit, then letters, digits, '-' or '_'")
        queue = self.resources.queue(validation.require(body, "jobQueue"), "jobQueue")
        if queue.state != "ENABLED":
            raise ClientException(f"jobQueue: {queue.name!r} is DISABLED and accepts no new jobs")
        jd = self.resources.job_definition(validation.require(body, "jobDefinition"), "jobDefinition")
        if jd.status != "ACTIVE":
            raise ClientException(f"jobDefinition: {jd.name}:{jd.revision} is INACTIVE")
        array_size = self._array_size(body.get("arrayProperties"))
        depends_on = self._depends_on(body.get("dependsOn"), array_size)
        params = {**jd.body.get("parameters", {}), **validation.as_str_map(body.get("parameters") or {}, "parameters")}
        overrides = validation.as_dict(body.get("containerOverrides") or {}, "containerOverrides")
        validation.unknown_keys(overrides, _OVERRIDE_KEYS, "containerOverrides")
        container, resources = self._effective_container(jd.body["containerProperties"], overrides, params)
        strategy = shapes.retry_strategy(body["retryStrategy"]) if body.get("retryStrategy") is not None \
            else jd.body.get("retryStrategy")
        timeout = shapes.timeout(body["timeout"]) if body.get("timeout") is not None \
            else (jd.body.get("timeout") or {}).get("attemptDurationSeconds")
        tags = validation.tags(body.get("tags") or {})
        propagate = validation.as_bool(body.get("propagateTags", jd.body.get("propagateTags", False)), "propagateTags")
        share = body.get("shareIdentifier")
        if share is not None:
            if not queue.scheduling_policy_arn:
                raise ClientException("shareIdentifier: only allowed on a job queue with a fair-share policy")
            validation.as_str(share, "shareIdentifier", pattern=_SHARE_RE, expected="up to 255 letters or digits")
        elif queue.scheduling_policy_arn:
            raise ClientException("shareIdentifier: is required on a job queue with a fair-share policy")
        priority = body.get("schedulingPriorityOverride", jd.body.get("schedulingPriority"))
        if priority is not None:
            validation.as_int(priority, "schedulingPriorityOverride", minimum=0, maximum=9999)
        failure = None
        if propagate and len({**jd.body.get("tags", {}), **tags}) > 50:
            failure = "Tag propagation failed: more than 50 tags"
        if len(json.dumps(overrides, separators=(",", ":"))) > MAX_OVERRIDES_CHARS:
            failure = f"Container Overrides length must be at most {MAX_OVERRIDES_CHARS}"
        self._seq += 1
        now = self.scheduler.now()
        sub = Submission(
            job_id=arns.new_job_id(), seq=self._seq, name=name, queue=queue.name, job_definition=jd.arn,
            container=container, resources=resources, parameters=params, retry_strategy=strategy,
            timeout_seconds=timeout, depends_on=depends_on, array_size=array_size, tags=tags,
            propagate_tags=propagate, scheduling_priority=priority, share_identifier=share,
            created_at=now, failure=failure,
        )
        job = Job(job_id=sub.job_id, sub=sub, index=None, status=JobStatus.SUBMITTED, created_at=now)
        with self.scheduler.store.transaction():
            self.scheduler.store.insert_submission(sub)
            self.scheduler.store.upsert_jobs([job])
        self.scheduler.jobs[job.job_id] = job
        self.scheduler.top_level.append(job)
        self.scheduler.admissions.append(job)
        return {"jobArn": arns.job_arn(job.job_id), "jobName": name, "jobId": job.job_id}

    @staticmethod
    def _array_size(value: Any) -> int | None:
        if value is None:
            return None
        props = validation.as_dict(value, "arrayProperties")
        if props.get("size") is None:
            return None
        return validation.as_int(props["size"], "arrayProperties.size", minimum=2, maximum=MAX_ARRAY_SIZE)

    def _depends_on(self, value: Any, array_size: int | None) -> list[dict[str, str]]:
        if value is None:
            return []
        entries = validation.as_list(value, "dependsOn")
        if len(entries) > MAX_DEPENDENCIES:
            raise ClientException(f"dependsOn: Job cannot have more than {MAX_DEPENDENCIES} dependencies, "
                                  f"got {len(entries)}")
        result = []
        for i, entry in enumerate(entries):
            path = f"dependsOn[{i}]"
            entry = validation.as_dict(entry, path)
            kind = entry.get("type")
            if kind is not None:
                kind = validation.as_enum(kind, f"{path}.type", ("N_TO_N", "SEQUENTIAL"))
            if kind == "SEQUENTIAL":
                if array_size is None:
                    raise ClientException(f"{path}.type: SEQUENTIAL is only valid on an array job")
                result.append({"type": "SEQUENTIAL"})
                continue
            job_id = validation.as_str(validation.require(entry, "jobId", f"{path}.jobId"), f"{path}.jobId", min_len=1)
            if job_id not in self.scheduler.jobs and not self._is_child_of_known_array(job_id):
                raise ClientException(f"{path}.jobId: job {job_id!r} does not exist")
            dep = {"jobId": job_id}
            if kind:
                dep["type"] = kind
            result.append(dep)
        return result

    def _is_child_of_known_array(self, job_id: str) -> bool:
        # Children of an array submitted moments ago may not be spawned yet.
        parent_id, _, index = job_id.rpartition(":")
        parent = self.scheduler.jobs.get(parent_id)
        return bool(parent and parent.sub.array_size and index.isascii() and index.isdigit()
                    and str(int(index)) == index
                    and int(index) < parent.sub.array_size)  # "p:01" is no child id: it would never resolve

    @staticmethod
    def _effective_container(base: dict[str, Any], overrides: dict[str, Any],
                             params: dict[str, str]) -> tuple[dict[str, Any], Any]:
        container = copy.deepcopy(base)
        if overrides.get("command") is not None:
            container["command"] = shapes.command(overrides["command"], "containerOverrides.command")
        container["command"] = shapes.substitute_refs(list(container.get("command") or []), params)
        if not container["command"]:
            raise ClientException("containerOverrides.command: the job has no command (none in the job "
                                  "definition or the overrides)")
        if overrides.get("environment") is not None:
            merged = {e["name"]: e for e in container.get("environment") or []}
            for item in shapes.environment(overrides["environment"], "containerOverrides.environment"):
                merged[item["name"]] = item
            container["environment"] = list(merged.values())
        requirements = shapes.merge_requirements(base, "containerProperties")
        override_reqs = shapes.resource_requirements(overrides.get("resourceRequirements") or [],
                                                     "containerOverrides.resourceRequirements")
        for legacy, kind in (("vcpus", "VCPU"), ("memory", "MEMORY")):
            if overrides.get(legacy) is not None:
                if base.get("resourceRequirements") and any(r.get("type") == kind for r in base["resourceRequirements"]):
                    raise ClientException(f"containerOverrides.{legacy}: cannot override a {kind} set through "
                                          "resourceRequirements in the job definition")
                override_reqs.setdefault(kind, str(validation.as_int(overrides[legacy], f"containerOverrides.{legacy}",
                                                            minimum=1 if kind == "VCPU" else 4)))
        requirements.update(override_reqs)
        resources = shapes.to_resources(requirements, "resourceRequirements")
        container.pop("vcpus", None)
        container.pop("memory", None)
        container["resourceRequirements"] = [{"type": k, "value": requirements[k]}
                                             for k in ("VCPU", "MEMORY", "GPU") if k in requirements]
        return container, resources

    # -- DescribeJobs / ListJobs ----------------------------------------------------------------
    def describe_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        ids = validation.as_list(validation.require(body, "jobs"), "jobs")
        if len(ids) > MAX_DESCRIBE:
            raise ClientException(f"jobs: Maximum number of jobs supported is {MAX_DESCRIBE}, got {len(ids)}")
        found = []
        for i, job_id in enumerate(ids):
            job = self.scheduler.jobs.get(validation.as_str(job_id, f"jobs[{i}]"))
            if job is not None:  # unknown ids are left out, as AWS does
                found.append(json.loads(wire.detail_json(job)))
        return {"jobs": found}

    def list_jobs(self, body: dict[str, Any]) -> dict[str, Any]:
        selectors = [k for k in ("jobQueue", "arrayJobId", "multiNodeJobId") if body.get(k) is not None]
        if len(selectors) != 1:
            raise ClientException("ListJobs: give exactly one of jobQueue, arrayJobId or multiNodeJobId")
        if selectors[0] == "multiNodeJobId":
            raise ClientException("multiNodeJobId: multi-node parallel jobs are not supported by the local engine")
        if selectors[0] == "jobQueue":
            queue = self.resources.queue(body["jobQueue"], "jobQueue")
            jobs = [j for j in self.scheduler.top_level if j.sub.queue == queue.name]
        else:
            parent = self.job(body["arrayJobId"], "arrayJobId")
            if parent.sub.array_size is None or parent.index is not None:
                raise ClientException(f"arrayJobId: {parent.job_id!r} is not an array job")
            jobs = list(parent.children or [])
        filters = validation.as_list(body.get("filters") or [], "filters", max_items=1)
        if filters:
            jobs = self._apply_filter(jobs, validation.as_dict(filters[0], "filters[0]"))
            jobs = sorted(jobs, key=lambda j: j.created_at, reverse=True)
            limit = 100
        else:
            status = validation.as_enum(body.get("jobStatus") or "RUNNING", "jobStatus", ALL_STATUSES)
            jobs = [j for j in jobs if j.status.value == status]
            limit = 1000
        items, token = page(jobs, body, "maxResults", limit=limit)
        return {"jobSummaryList": [wire.job_summary(j) for j in items], **token}

    @staticmethod
    def _apply_filter(jobs: list[Job], entry: dict[str, Any]) -> list[Job]:
        name = validation.as_enum(validation.require(entry, "name", "filters[0].name"), "filters[0].name",
                         ("JOB_NAME", "JOB_DEFINITION", "BEFORE_CREATED_AT", "AFTER_CREATED_AT",
                          "SHARE_IDENTIFIER"))
        values = validation.as_list(validation.require(entry, "values", "filters[0].values"), "filters[0].values", max_items=1)
        if not values:
            raise ClientException("filters[0].values: one value is required")
        value = validation.as_str(values[0], "filters[0].values[0]", min_len=1)
        if name == "JOB_NAME":
            low = value.lower()
            if low.endswith("*"):
                return [j for j in jobs if j.sub.name.lower().startswith(low[:-1])]
            return [j for j in jobs if j.sub.name.lower() == low]
        if name == "JOB_DEFINITION":
            text = arns.name_from_arn(value, "job-definition")
            if text.endswith("*"):
                return [j for j in jobs if j.sub.job_definition.rsplit("/", 1)[-1].startswith(text[:-1])]
            if ":" in text:
                return [j for j in jobs if j.sub.job_definition.rsplit("/", 1)[-1] == text]
            return [j for j in jobs if j.sub.job_definition.rsplit("/", 1)[-1].rsplit(":", 1)[0] == text]
        if name in ("BEFORE_CREATED_AT", "AFTER_CREATED_AT"):
            if not (value.isascii() and value.isdigit() and len(value) <= 18):
                raise validation.fail("filters[0].values[0]", "epoch milliseconds as a string", value)
            moment = int(value)
            if name == "BEFORE_CREATED_AT":
                return [j for j in jobs if j.created_at < moment]
            return [j for j in jobs if j.created_at > moment]
        return [j for j in jobs if (j.sub.share_identifier or "") == value]

    # -- CancelJob / TerminateJob ---------------------------------------------------------------
    def _reason(self, body: dict[str, Any]) -> str:
        return validation.as_str(validation.require(body, "reason"), "reason", max_len=1024)

    def cancel_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self.job(validation.require(body, "jobId"))
        self.scheduler.cancel(job, self._reason(body))
        return {}

    def terminate_job(self, body: dict[str, Any]) -> dict[str, Any]:
        job = self.job(validation.require(body, "jobId"))
        self.scheduler.terminate(job, self._reason(body))
        return {}
