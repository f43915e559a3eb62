# syntax=docker/dockerfile:1
# The shared MLflow tracking server of compose.yaml: MLflow's own image plus the Postgres driver (backend
# store) and the S3 client (artifact store) that `mlflow server` needs for them. Build from the repository root:
#   docker build -f deploy/mlflow-server.Dockerfile -t tierwise-mlflow .
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir psycopg2-binary==2.9.13 boto3==1.44.8
