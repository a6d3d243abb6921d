"""GeoDjango's per-thread GEOS state, released at the end of each request.

Under ASGI, Django runs each request's synchronous code in a thread of its own that ends with
the request. GeoDjango keeps two thread-locals for such a thread: the GEOS context handle
(`threadsafe.thread_context`), and the WKB/WKT readers and writers built on it
(`io.thread_context`). When the thread ends, Python clears its locals in no set order; when the
handle goes first, a reader's destructor calls GEOS again and makes a new handle in a thread
that is already being torn down, where nothing frees it. One handle (and the GEOS memory behind
it) was lost per request that read a geometry: 2,300 handles alive after 2,300 GET
/api/config/, a web worker's RSS growing 8-14 MiB a minute in the city soak.

At `request_finished` (sent in the request's thread) the readers and writers are dropped first,
while the handle is there to free them, then the handle. A thread that uses GEOS again makes
them anew, as before. Django's ticket 29878 is about this kind of thread teardown.
"""

from django.contrib.gis.geos.prototypes import io, threadsafe


def release_geos_thread_state(**_) -> None:
    io.thread_context.__dict__.clear()
    threadsafe.thread_context.handle = None
