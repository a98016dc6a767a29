import Glibc

/// Runs `body` on `count` new pthreads (index 0..<count) and joins them.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Context: @unchecked Sendable {
        // @unchecked: immutable after creation.
        let body: @Sendable (Int) -> Void
        let index: Int
        init(_ body: @escaping @Sendable (Int) -> Void, _ index: Int) {
            self.body = body
            self.index = index
        }
    }
    var threads: [pthread_t] = []
    for index in 0..<count {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(Context(body, index)).toOpaque()
        pthread_create(&thread, nil, { raw in
            let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            context.body(context.index)
            return nil
        }, context)
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
}
