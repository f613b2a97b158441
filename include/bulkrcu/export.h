/* bulkrcu/export.h: BULKRCU_API marks the entry points the shared library exports.
 *
 * The library is built with hidden visibility; every public function (and every symbol the
 * inline fast paths in the headers reach) is declared with BULKRCU_API. */
#ifndef BULKRCU_EXPORT_H
#define BULKRCU_EXPORT_H

#define BULKRCU_API __attribute__((visibility("default")))

#endif /* BULKRCU_EXPORT_H */
