"""The trends page: per site and day, in the viewer's time zone, over a chosen range."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from dashboard import charts, local_days, queries, trends
from dashboard.page_support import DB, Who, Zone, local_range, render

router = APIRouter(include_in_schema=False)


@router.get("/trends", response_class=HTMLResponse)
def trends_page(request: Request, session: DB, who: Who, zone: Zone, site: str = "",
                date_from: str | None = None, date_to: str | None = None) -> HTMLResponse:
    start, end = local_range(zone, date_from, date_to)
    try:
        trend = trends.trends(session, zone, start, end, site or None)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return render(request, "trends.html", who, zone, "trends", trend=trend, site=site,
                  sites=queries.sites(session), chart_data=charts.trend_charts(trend),
                  default_days=local_days.DEFAULT_DAYS)
