# GPU hosts: NVIDIA's TensorFlow image already has TensorFlow 2.17 and Horovod built with NCCL,
# so only the project and its pure-Python dependencies are installed on top.
#   docker build -t easgd .
#   docker run --gpus all -p 8765:8765 -p 8501:8501 -v easgd-data:/data easgd
FROM nvcr.io/nvidia/tensorflow:25.02-tf2-py3

ENV EASGD_HOME=/data \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/easgd
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY training/ training/
COPY db/ db/
COPY service/ service/
COPY ui/ ui/
COPY configs/ configs/

# The image's TensorFlow, Keras, NumPy and Horovod stay as they are (--no-deps for the project);
# the rest comes pinned from the same constraints file the CPU setup uses.
RUN python -m pip install --no-cache-dir -c requirements/constraints.txt \
        "pydantic" "pyyaml" "mlxtend" "scikit-learn" "sqlalchemy" "alembic" "psycopg[binary]" \
        "fastapi" "uvicorn" "httpx" "psutil" "streamlit" "matplotlib" "optuna" "pyzmq" \
    && python -m pip install --no-cache-dir --no-deps . \
    && horovodrun --check-build | grep -q "\[X\] TensorFlow"

VOLUME ["/data"]
EXPOSE 8765 8501
# Beyond loopback the service needs a token: docker run -e EASGD_API_TOKEN=... (it refuses
# to start without one). The UI has no login: publish 8501 only on a trusted network.
CMD ["easgd", "up", "--host", "0.0.0.0", "--ui-host", "0.0.0.0"]
