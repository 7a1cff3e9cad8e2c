//! Sending a [`Request`] through `wasi:http`.

use std::time::Duration;

use super::{url, HttpError, Request, Response, Timeouts};
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    self as wasi, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, OutgoingBody,
    OutgoingRequest, RequestOptions,
};
use crate::bindings::wasi::io::streams::StreamError;

/// Largest write `blocking-write-and-flush` accepts.
const WRITE_CHUNK: usize = 4096;
/// Largest read asked of the response body stream at a time.
const READ_CHUNK: u64 = 64 * 1024;

pub(super) fn send(req: &Request) -> Result<Response, HttpError> {
    let url = url::parse(&req.url)?;
    let request = OutgoingRequest::new(headers(req)?);
    request
        .set_method(&req.method)
        .map_err(|()| HttpError::Rejected("method"))?;
    request
        .set_scheme(Some(&url.scheme))
        .map_err(|()| HttpError::Rejected("scheme"))?;
    request
        .set_authority(Some(&url.authority))
        .map_err(|()| HttpError::Rejected("authority"))?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| HttpError::Rejected("path"))?;
    let options = options(&req.timeouts)?;
    let body = request
        .body()
        .map_err(|()| HttpError::Stream("request body already taken".into()))?;

    let future = outgoing_handler::handle(request, options)?;
    if let Err(write_error) = write_body(body, &req.body) {
        // The body usually breaks because the request failed; the response future has
        // the better reason.
        return match wait(&future) {
            Err(err) => Err(err),
            Ok(_) => Err(write_error),
        };
    }
    read(wait(&future)?)
}

fn headers(req: &Request) -> Result<Fields, HttpError> {
    let fields = Fields::new();
    let add = |name: &str, value: &[u8]| {
        fields
            .append(name, value)
            .map_err(|error| HttpError::InvalidHeader {
                name: name.to_string(),
                error,
            })
    };
    for (name, value) in &req.headers {
        add(name, value.as_bytes())?;
    }
    if !req.body.is_empty() && !req.has_header("content-length") {
        add("content-length", req.body.len().to_string().as_bytes())?;
    }
    Ok(fields)
}

fn options(timeouts: &Timeouts) -> Result<Option<RequestOptions>, HttpError> {
    if timeouts.is_default() {
        return Ok(None);
    }
    let options = RequestOptions::new();
    let nanos =
        |limit: Option<Duration>| limit.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    options
        .set_connect_timeout(nanos(timeouts.connect))
        .map_err(|()| HttpError::Rejected("connect timeout"))?;
    options
        .set_first_byte_timeout(nanos(timeouts.first_byte))
        .map_err(|()| HttpError::Rejected("first-byte timeout"))?;
    options
        .set_between_bytes_timeout(nanos(timeouts.between_bytes))
        .map_err(|()| HttpError::Rejected("between-bytes timeout"))?;
    Ok(Some(options))
}

fn write_body(body: OutgoingBody, data: &[u8]) -> Result<(), HttpError> {
    {
        // The stream is a child of the body and must be gone before `finish`.
        let stream = body
            .write()
            .map_err(|()| HttpError::Stream("request body stream already taken".into()))?;
        for chunk in data.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(stream_error)?;
        }
    }
    OutgoingBody::finish(body, None)?;
    Ok(())
}

fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, HttpError> {
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(code.into()),
            Some(Err(())) => return Err(HttpError::Stream("response already taken".into())),
            None => future.subscribe().block(),
        }
    }
}

fn read(response: IncomingResponse) -> Result<Response, HttpError> {
    let status = response.status();
    let headers = {
        // A child of the response; dropped at the end of this block.
        let fields = response.headers();
        fields
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect()
    };
    let incoming = response
        .consume()
        .map_err(|()| HttpError::Stream("response body already taken".into()))?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| HttpError::Stream("response body stream already taken".into()))?;
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(err) => return Err(stream_error(err)),
            }
        }
    }
    // Trailers are not exposed; dropping the future discards them.
    drop(IncomingBody::finish(incoming));
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn stream_error(err: StreamError) -> HttpError {
    match err {
        StreamError::Closed => HttpError::Stream("stream closed".into()),
        StreamError::LastOperationFailed(io) => match wasi::http_error_code(&io) {
            Some(code) => HttpError::Code(code),
            None => HttpError::Stream(io.to_debug_string()),
        },
    }
}
