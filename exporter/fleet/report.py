"""The fleet's summary: fleet.json (data) and fleet.md (tables) from the users' records and the workers."""

from __future__ import annotations

from exporter.fleet.users import UserJob

SUMMARY_VERSION = 1


def fleet_summary(
    options, jobs: list[UserJob], records: dict, workers: list[dict], wall: float, on_disk: int, as_copies: int
) -> dict:
    users = [_user_row(job, records[job.user]) for job in jobs]
    ok = [u for u in users if u["status"] == "ok"]
    exported = [u for u in ok if not u["skipped"]]
    artifacts = {(a["format"], a["artifact_id"]) for u in ok for a in u["artifacts"]}
    plans = {(a["format"], a["plan_id"]) for u in ok for a in u["artifacts"]}
    busy = sum(u["seconds"] or 0 for u in users if not u["skipped"])
    return {
        "summary_version": SUMMARY_VERSION,
        "model": options.defaults.model,
        "address": options.address or "local",
        "totals": {
            "users": len(users),
            "ok": len(ok),
            "exported": len(exported),
            "skipped": len(ok) - len(exported),
            "failed": len(users) - len(ok),
            "artifacts": sum(len(u["artifacts"]) for u in ok),
            "distinct_artifacts": len(artifacts),
            "distinct_plans": len(plans),
            "bytes_on_disk": on_disk,
            "bytes_as_copies": as_copies,
            "wall_seconds": round(wall, 1),
            "export_seconds": round(busy, 1),
            "users_per_hour": round(len(exported) / wall * 3600, 1) if exported and wall > 0 else None,
        },
        "workers": workers,
        "users": users,
    }


def _user_row(job: UserJob, record: dict) -> dict:
    return {
        "user": job.user,
        "line": job.line,
        "status": record["status"],
        "skipped": bool(record.get("skipped")),
        "error": record.get("error"),
        "attempts": record.get("attempts", 0),
        "seconds": record.get("seconds"),
        "peak_rss_mb": record.get("peak_rss_mb"),
        "worker": record.get("worker"),
        "stages": record.get("stages", {}),
        "artifacts": record.get("artifacts", []),
    }


def render_markdown(summary: dict) -> str:
    t = summary["totals"]
    lines = [
        f"# Fleet: {summary['model']}, {t['users']} users",
        "",
        f"{t['ok']} ok ({t['exported']} exported in this run, {t['skipped']} already done), {t['failed']} failed; "
        f"{t['artifacts']} artifacts of {t['distinct_artifacts']} distinct contents ({t['distinct_plans']} distinct "
        f"plans); {t['bytes_on_disk'] / 1e6:,.1f} MB on disk against {t['bytes_as_copies'] / 1e6:,.1f} MB as "
        f"separate copies; {t['wall_seconds']:,.0f} s wall"
        + (f", {t['users_per_hour']:,.1f} users per hour" if t["users_per_hour"] else ""),
        "",
    ]
    if summary["workers"]:
        lines += ["| worker | threads | users | model load s | peak RSS MB |", "|---|---:|---:|---:|---:|"]
        lines += [
            f"| {w['worker']} | {w['threads']} | {w['users']} | {w['load_seconds']:.1f} | {w['peak_rss_mb']:,.0f} |"
            for w in summary["workers"]
        ]
        lines.append("")
    lines += [
        "| user | status | artifacts (format: MB, plan id, artifact id) | s | peak RSS MB | note |",
        "|---|---|---|---:|---:|---|",
    ]
    for u in summary["users"]:
        artifacts = "; ".join(
            f"{a['format']}: {a['artifact_bytes'] / 1e6:.2f}, {a['plan_id'][:8]}, {a['artifact_id'][:8]}"
            for a in u["artifacts"]
        )
        seconds = "-" if u["seconds"] is None else f"{u['seconds']:.0f}"
        peak = "-" if u["peak_rss_mb"] is None else f"{u['peak_rss_mb']:,.0f}"
        note = "done earlier" if u["skipped"] else (u["error"] or "").replace("|", "/").replace("\n", " ")
        lines.append(f"| {u['user']} | {u['status']} | {artifacts or '-'} | {seconds} | {peak} | {note} |")
    return "\n".join(lines) + "\n"
