# One image for web, worker, beat and the sandbox; the command picks the process.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e .
USER nobody
EXPOSE 8000
CMD ["gunicorn", "web.wsgi:app", "--config", "gunicorn.conf.py"]
