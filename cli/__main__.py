from movierec.cli import app

app()
