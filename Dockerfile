FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
RUN pip install --upgrade pip && pip install .
COPY . .
RUN DEBUG=1 python manage.py collectstatic --noinput
RUN useradd --create-home cdp && mkdir -p /app/var && chown -R cdp /app/var
USER cdp
EXPOSE 8000
CMD ["gunicorn", "cdp.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--worker-class", "gthread", "--threads", "2", "--preload", "--access-logfile", "-"]
