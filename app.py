"""Chalice app: registers the blueprints of chalicelib/handlers; no logic here."""

from chalice import Chalice

from chalicelib.handlers import api, events, release, tasks

app = Chalice(app_name="conveyor")
app.register_blueprint(api.blueprint)
app.register_blueprint(events.blueprint)
app.register_blueprint(tasks.blueprint)
app.register_blueprint(release.blueprint)
