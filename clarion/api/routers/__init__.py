"""The API's routers: every module here that defines `router` (a FastAPI APIRouter) is included."""
