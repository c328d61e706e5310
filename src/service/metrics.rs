//! Prometheus metrics of the service, named with units (`_seconds`, `_total`, ...).
//! No per-image scores are ever exported.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub in_flight: IntGauge,
    pub queue_wait: Histogram,
    pub inference_duration: HistogramVec,
    pub batch_views: Histogram,
    pub images: IntCounter,
    pub image_errors: IntCounter,
    pub views: IntCounter,
    pub info: GaugeVec,
    pub ready: Gauge,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ]
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "sslmem_http_requests_total",
                "HTTP requests by route and status code",
            ),
            &["route", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "sslmem_http_request_duration_seconds",
                "HTTP request duration",
            )
            .buckets(latency_buckets()),
            &["route"],
        )?;
        let in_flight = IntGauge::new(
            "sslmem_http_requests_in_flight",
            "HTTP requests being served",
        )?;
        let queue_wait = Histogram::with_opts(
            HistogramOpts::new(
                "sslmem_queue_wait_seconds",
                "Time a job waits in the inference queue before its batch runs",
            )
            .buckets(latency_buckets()),
        )?;
        let inference_duration = HistogramVec::new(
            HistogramOpts::new(
                "sslmem_inference_duration_seconds",
                "Forward pass of one batch through one encoder",
            )
            .buckets(latency_buckets()),
            &["encoder"],
        )?;
        let batch_views = Histogram::with_opts(
            HistogramOpts::new("sslmem_batch_size_views", "Views per inference batch").buckets(
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
                ],
            ),
        )?;
        let images = IntCounter::new(
            "sslmem_images_processed_total",
            "Images decoded and scored, aligned or embedded",
        )?;
        let image_errors = IntCounter::new(
            "sslmem_image_errors_total",
            "Images answered with an error entry instead of a score (on_error=report)",
        )?;
        let views = IntCounter::new(
            "sslmem_views_processed_total",
            "Views run through the encoders (each view once)",
        )?;
        let info = GaugeVec::new(
            Opts::new(
                "sslmem_info",
                "Always 1; labels name the bundle, execution provider and version",
            ),
            &["bundle", "provider", "version"],
        )?;
        let ready = Gauge::new(
            "sslmem_ready",
            "1 when the service accepts work, 0 while starting or draining",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(queue_wait.clone()))?;
        registry.register(Box::new(inference_duration.clone()))?;
        registry.register(Box::new(batch_views.clone()))?;
        registry.register(Box::new(images.clone()))?;
        registry.register(Box::new(image_errors.clone()))?;
        registry.register(Box::new(views.clone()))?;
        registry.register(Box::new(info.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        Ok(Self {
            registry,
            requests,
            request_duration,
            in_flight,
            queue_wait,
            inference_duration,
            batch_views,
            images,
            image_errors,
            views,
            info,
            ready,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl crate::engine::Observer for Metrics {
    fn queue_wait(&self, waited: std::time::Duration) {
        self.queue_wait.observe(waited.as_secs_f64());
    }

    fn batch(&self, views: usize) {
        self.batch_views.observe(views as f64);
        self.views.inc_by(views as u64);
    }

    fn inference(&self, encoder: &str, took: std::time::Duration) {
        self.inference_duration
            .with_label_values(&[encoder])
            .observe(took.as_secs_f64());
    }
}
